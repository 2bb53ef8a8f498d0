"""The service's MQTT clients of the API processes: the publisher (publish and wait for the
PUBACK), the event feed (``service/events`` notifications), the preview relay (live video frames),
and the health of this process's broker connection. The bridge's own connections are in
``controlsvc.bridge.mqtt_client``."""
