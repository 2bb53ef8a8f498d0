from __future__ import annotations


def test_health_needs_no_token_and_reports_database(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"]["ok"] is True
    assert body["version"]


def test_unknown_route_is_problem_json(client):
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404


def test_swagger_json_and_ui_are_local(client):
    spec = client.get("/swagger.json")
    assert spec.status_code == 200
    assert "/api/health" in spec.get_json()["paths"]
    ui = client.get("/swaggerui/")
    assert ui.status_code == 200
    assert b"swagger/js/swagger-ui-bundle.js" in ui.data
    assert b"//cdn" not in ui.data
    assert b"unpkg" not in ui.data
    asset = client.get("/swaggerui/swagger/js/swagger-ui-bundle.js")
    assert asset.status_code == 200
    asset.close()
