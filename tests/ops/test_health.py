async def test_health_is_public(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_database(client):
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
