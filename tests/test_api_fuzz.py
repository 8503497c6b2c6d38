"""Schemathesis fuzzes every operation of our own OpenAPI schema over real HTTP.

Whatever it generates — valid or not — the answer must be no 5xx, JSON, and a body that
conforms to the documented schema for that status.
"""

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


@pytest.fixture
def fuzz_key(transactional_db, live_server, settings):
    from .conftest import Cast

    cast = Cast()
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "events": 10**6, "analytics": 10**6, "anon": 10**6}
    return cast.key, live_server.url


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_can_be_made_to_fail(case, fuzz_key):
    key, base_url = fuzz_key
    response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {key}"})
    case.validate_response(response, checks=[not_a_server_error, content_type_conformance, response_schema_conformance])
    assert response.status_code < 500
