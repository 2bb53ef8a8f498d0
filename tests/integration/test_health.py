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


def test_health_reports_a_broker_at_port_0_as_down_not_500(settings, database):
    """The dev profile's [MQTT] port 0 (the embedded broker `run` starts) under `runserver`,
    which starts none: the broker is down, with the reason, and the answer is no 500."""
    from controlsvc.ops.app import create_app

    mqtt = settings.mqtt.model_copy(update={"port": 0})
    app = create_app(settings.model_copy(update={"mqtt": mqtt}), database=database)
    response = app.test_client().get("/api/health")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False
    assert "port is 0" in body["broker"]["detail"]
