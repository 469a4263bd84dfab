"""The hand-written CRD (crds/labservers.yaml): shape, conventions, and agreement with labop.spec."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from tests.unit.factories import (
    CEL_TWINS,
    EXAMPLES,
    a_labserver,
    defaulted,
    expected_error,
    load_crd,
    load_example,
    root_schema,
    schema_errors,
    validate,
    version_of,
)

from labop import naming, spec
from labop.runtime import PermanentError

INVALID_EXAMPLES = sorted((EXAMPLES / "invalid").glob("*.yaml"))
VALID_EXAMPLES = sorted(EXAMPLES.glob("*.yaml"))
# metadata.name problems never reach parse_spec, which sees the spec only.
INVALID_SPEC_EXAMPLES = [path for path in INVALID_EXAMPLES if expected_error(path)[0].startswith("spec.")]


def walk(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node with its path (properties by name, items as [], maps as {})."""
    yield path, schema
    for key, prop in schema.get("properties", {}).items():
        yield from walk(prop, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def spec_schema() -> Any:
    return root_schema()["properties"]["spec"]


def listeners_schema() -> Any:
    return spec_schema()["properties"]["listeners"]


def test_the_crd_names_the_labserver_resource_in_the_k8slab_group() -> None:
    crd = load_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{naming.PLURAL}.{naming.GROUP}"
    assert crd["spec"]["group"] == naming.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": naming.KIND,
        "listKind": "LabServerList",
        "plural": naming.PLURAL,
        "singular": "labserver",
        "shortNames": ["lsrv"],
        "categories": ["k8slab", "all"],
    }


def test_the_only_version_is_served_and_stored() -> None:
    version = version_of(load_crd())
    assert (version["name"], version["served"], version["storage"]) == (naming.VERSION, True, True)


def test_status_and_scale_subresources_point_at_replicas_and_the_selector_string() -> None:
    assert version_of(load_crd())["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    status = root_schema()["properties"]["status"]["properties"]
    assert status["selector"]["type"] == "string"
    assert status["replicas"]["type"] == "integer"


def test_printer_columns_show_replicas_readiness_and_the_ready_reason() -> None:
    columns = {column["name"]: column for column in version_of(load_crd())["additionalPrinterColumns"]}
    assert {name: (c["type"], c["jsonPath"], c.get("priority", 0)) for name, c in columns.items()} == {
        "Replicas": ("integer", ".spec.replicas", 0),
        "Ready": ("integer", ".status.readyReplicas", 0),
        "Status": ("string", '.status.conditions[?(@.type=="Ready")].reason', 0),
        "Age": ("date", ".metadata.creationTimestamp", 0),
        "Message": ("string", ".spec.message", 1),
        "Ports": ("string", ".spec.listeners[*].port", 1),
    }


def test_every_schema_node_has_a_type_as_a_structural_schema_requires() -> None:
    untyped = [
        path
        for path, node in walk(root_schema())
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


def test_no_node_mixes_properties_with_additional_properties() -> None:
    assert [
        p for p, node in walk(root_schema()) if "properties" in node and "additionalProperties" in node
    ] == []


def test_junctors_are_only_the_int_or_string_pattern() -> None:
    # Structural schemas forbid types, defaults and descriptions inside anyOf/allOf/oneOf/not,
    # except `anyOf: [{type: integer}, {type: string}]` with x-kubernetes-int-or-string.
    for path, node in walk(root_schema()):
        assert not {"allOf", "oneOf", "not"} & node.keys(), path
        if "anyOf" in node:
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert node.get("x-kubernetes-int-or-string") is True, path


def test_metadata_only_restricts_the_name_as_the_apiserver_allows() -> None:
    metadata = root_schema()["properties"]["metadata"]
    assert set(metadata) == {"type", "properties"}
    assert set(metadata["properties"]) == {"name"}


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    schema = root_schema()
    assert schema.get("description")
    missing = [
        path
        for path, node in walk(schema)
        # metadata may not carry one (the apiserver documents ObjectMeta itself).
        if path and not path.startswith(".metadata") and "{}" not in path and not node.get("description")
    ]
    assert missing == []


def test_every_default_is_valid_against_its_own_schema_and_rules() -> None:
    defaults = [(path, node) for path, node in walk(root_schema()) if "default" in node]
    assert defaults, "the spec has defaults"
    for path, node in defaults:
        assert schema_errors(node, defaulted(node, node["default"]), path) == [], path


def test_the_crd_defaults_are_the_operators_defaults() -> None:
    props = spec_schema()["properties"]
    assert props["replicas"]["default"] == spec.DEFAULT_REPLICAS
    assert props["message"]["default"] == spec.DEFAULT_MESSAGE
    assert props["listeners"]["default"] == [
        {"name": listener.name, "port": listener.port} for listener in spec.DEFAULT_LISTENERS
    ]
    assert "default" not in props["image"], "the operator fills in its own image"


def test_an_empty_spec_defaults_to_what_parse_spec_makes_of_it() -> None:
    stored = defaulted(root_schema(), {"metadata": {"name": "x"}})["spec"]
    assert parse(stored) == parse({})


def test_the_crd_limits_are_the_operators_limits() -> None:
    props = spec_schema()["properties"]
    listener = listeners_schema()["items"]["properties"]
    assert (props["replicas"]["minimum"], props["replicas"]["maximum"]) == (
        spec.MIN_REPLICAS,
        spec.MAX_REPLICAS,
    )
    assert props["message"]["maxLength"] == spec.MAX_MESSAGE_LENGTH
    assert (listeners_schema()["minItems"], listeners_schema()["maxItems"]) == (
        spec.MIN_LISTENERS,
        spec.MAX_LISTENERS,
    )
    assert listener["name"]["maxLength"] == spec.MAX_LISTENER_NAME_LENGTH
    assert listener["name"]["pattern"] == spec.LISTENER_NAME_PATTERN.pattern
    assert (listener["port"]["minimum"], listener["port"]["maximum"]) == (spec.MIN_PORT, spec.MAX_PORT)
    assert props["image"]["maxLength"] == spec.MAX_IMAGE_LENGTH
    for section in ("limits", "requests"):
        quantity = props["resources"]["properties"][section]["additionalProperties"]
        assert quantity["pattern"] == spec.QUANTITY_PATTERN.pattern


def test_listeners_and_their_names_carry_the_unique_and_letter_rules() -> None:
    rules = {rule["message"]: rule["rule"] for rule in listeners_schema()["x-kubernetes-validations"]}
    assert set(rules) == {"listener names must be unique", "listener ports must be unique"}
    name_rules = listeners_schema()["items"]["properties"]["name"]["x-kubernetes-validations"]
    assert {rule["message"] for rule in name_rules} == {
        "listener name must contain at least one letter",
        "listener name must not contain '--'",
    }


def test_every_cel_rule_has_a_python_twin_for_these_tests() -> None:
    rules = {
        rule["rule"] for _, node in walk(root_schema()) for rule in node.get("x-kubernetes-validations", [])
    }
    assert rules == set(CEL_TWINS)


def test_every_cel_rule_only_sees_bounded_lists_and_strings() -> None:
    # The apiserver refuses rules whose estimated cost is unbounded; bounds keep it tiny.
    for path, node in walk(root_schema()):
        if "x-kubernetes-validations" not in node:
            continue
        for inner_path, inner in walk(node, path):
            if inner.get("type") == "array":
                assert "maxItems" in inner, inner_path
            if inner.get("type") == "string":
                assert "maxLength" in inner, inner_path


def test_the_cel_twins_flag_duplicates_and_names_without_letters() -> None:
    unique_names = CEL_TWINS["self.all(l, self.exists_one(m, m.name == l.name))"]
    assert unique_names([{"name": "a"}, {"name": "b"}])
    assert not unique_names([{"name": "a"}, {"name": "a"}])
    assert not CEL_TWINS["self.matches('[a-z]')"]("8080")
    assert not CEL_TWINS["!self.contains('--')"]("a--b")


def test_conditions_are_a_map_list_keyed_by_type_shaped_like_metav1_condition() -> None:
    conditions = root_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]  # strings, not YAML booleans
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert item["properties"]["observedGeneration"]["type"] == "integer"


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=lambda p: p.name)
def test_each_valid_example_passes_the_schema_and_parse_spec(path: pathlib.Path) -> None:
    obj = load_example(path)
    assert validate(obj) == []
    parse(defaulted(root_schema(), obj)["spec"])


def test_there_is_an_invalid_example_for_each_rule_the_brief_names() -> None:
    assert {path.stem for path in INVALID_EXAMPLES} >= {
        "duplicate-listener-names",
        "duplicate-listener-ports",
        "privileged-port",
        "too-many-replicas",
        "uppercase-listener-name",
        "long-listener-name",
        "too-many-listeners",
        "empty-listeners",
        "message-too-long",
        "bad-quantity",
    }


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=lambda p: p.name)
def test_each_invalid_example_is_refused_at_the_field_its_comment_names(path: pathlib.Path) -> None:
    field, message = expected_error(path)
    obj = load_example(path)
    errors = validate(obj)
    assert field in {error_path for error_path, _ in errors}, errors
    assert f'The LabServer "{obj["metadata"]["name"]}" is invalid: ' in message


@pytest.mark.parametrize("path", INVALID_SPEC_EXAMPLES, ids=lambda p: p.name)
def test_parse_spec_refuses_each_invalid_spec_that_slipped_past_the_schema(path: pathlib.Path) -> None:
    field, _ = expected_error(path)
    with pytest.raises(PermanentError, match=re.escape(field)):
        parse(load_example(path)["spec"])


def test_a_labserver_from_the_factory_is_valid() -> None:
    assert validate(a_labserver()) == []


def parse(stored: Mapping[str, Any]) -> spec.LabServerSpec:
    return spec.parse_spec(stored, default_image=spec.DEFAULT_IMAGE)
