"""Clients integrate against the OpenAPI schema at /api/v1/schema and the docs at /api/v1/docs."""

import re

import pytest


@pytest.fixture
def schema(anon):
    response = anon.client.get("/api/v1/schema", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_has_the_reference_endpoints(schema):
    paths = schema["paths"]
    assert "post" in paths["/api/v1/events"]
    assert "post" in paths["/api/v1/events/purchase"]
    assert "get" in paths["/api/v1/analytics"]


def test_schema_declares_bearer_auth(schema):
    schemes = schema["components"]["securitySchemes"]
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values())
    assert schema["paths"]["/api/v1/events"]["post"]["security"]


@pytest.mark.parametrize(
    "path, method", [("/api/v1/events", "post"), ("/api/v1/events/purchase", "post"), ("/api/v1/analytics", "get")]
)
def test_schema_documents_errors_and_rate_limit_headers(schema, path, method):
    responses = schema["paths"][path][method]["responses"]
    assert {"400", "401", "403", "429", "500"} <= set(responses)
    for status, response in responses.items():
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.get("headers", {})), status
    assert "Retry-After" in responses["429"]["headers"]


def test_schema_request_bodies_name_the_fields(schema):
    components = schema["components"]["schemas"]
    assert {"event_name", "metadata", "visitor_id", "timestamp"} <= set(components["EventInRequest"]["properties"])
    assert components["EventInRequest"]["required"] == ["event_name"]
    purchase = components["PurchaseInRequest"]
    assert {"price", "currency", "product_name", "quantity"} <= set(purchase["properties"])
    assert set(purchase["required"]) == {"price", "currency", "product_name"}


def test_docs_are_served_without_a_cdn(anon):
    response = anon.client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets, page[:500]
    assert all(not a.startswith(("http://", "https://", "//")) for a in assets), assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert anon.client.get(asset).status_code == 200, asset
