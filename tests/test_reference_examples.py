"""Every example of the API reference, verbatim."""

REFERENCE_EVENT = {
    "event_name": "user_signup",
    "metadata": {"plan": "premium", "source": "landing_page"},
    "visitor_id": "optional_visitor_id",
    "timestamp": "2024-01-15T10:30:00Z",
}

REFERENCE_PURCHASE = {
    "price": 2999,
    "currency": "USD",
    "product_name": "Premium Plan",
    "quantity": 1,
    "metadata": {"billing": "monthly", "category": "subscription"},
    "visitor_id": "optional_visitor_id",
    "timestamp": "2024-01-15T10:30:00Z",
}


def test_send_event_example(api):
    response = api.post("/api/v1/events", REFERENCE_EVENT)
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    assert body["event_id"].startswith("evt_")


def test_send_purchase_example(api):
    response = api.post("/api/v1/events/purchase", REFERENCE_PURCHASE)
    assert response.status_code == 201
    assert response.json()["success"] is True


def test_get_analytics_example(api):
    api.post("/api/v1/events", REFERENCE_EVENT)
    api.post("/api/v1/events/purchase", REFERENCE_PURCHASE)
    response = api.get("/api/v1/analytics?start_date=2024-01-01&end_date=2024-01-31&metrics=page_views,unique_visitors,events")
    assert response.status_code == 200
    assert response.json() == {
        "data": {"page_views": 0, "unique_visitors": 1, "events": 2},
        "period": {"start": "2024-01-01", "end": "2024-01-31"},
    }
