"""The config file's JSON Schema, as editors read it (``autoscaler schema``).

``Config.model_json_schema()`` alone describes the models' internal shape: a queue, policy,
account or group block is ``{kind, settings: <any model>}``, while the YAML a person writes is
``{kind: redis-list, key: ..., url: ...}`` with the plugin's own keys beside ``kind``. This
module rebuilds those blocks from the registered plugins (the same registries ``load_config``
uses, so a third-party plugin's keys are completed too):

- ``queue``: one variant per queue kind, ``kind`` fixed to that kind's name;
- ``policy``: a kind's name alone, or one variant per policy kind with its parameters;
- ``providers.<account>``: one variant per provider kind (its ``AccountSettings``);
- a group: the common keys (``name``, ``provider``, ``market``...) with the group keys of any
  provider kind. The schema cannot know an account's kind from its name, so it accepts the
  keys of every kind; ``autoscaler validate`` checks them against the account's kind.

What the schema cannot say and ``validate`` does: cross-field rules (``max >= min``), unique
names, a queue used by two pools, ``${ENV}`` references in non-string fields.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from autoscaler.config.models import Config
from autoscaler.config.plugins import default_registries
from autoscaler.registry import Registry

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
GROUP_COMMON = ("name", "provider", "market", "hourly_price", "min", "max", "simulation")
ACCOUNT_COMMON = ("describe_timeout", "resize_timeout")
MODE: JsonSchemaMode = "validation"


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


class _Builder:
    def __init__(self, registries: dict[str, Registry[Any]]) -> None:
        self.registries = registries
        self.plugins: dict[str, list[tuple[str, Any]]] = {
            which: sorted(registries[which], key=lambda item: item[0])
            for which in ("sources", "policies", "providers")
        }
        models: list[type[BaseModel]] = [Config]
        for attribute, which in (("Settings", "sources"), ("Params", "policies"),
                                 ("AccountSettings", "providers"),
                                 ("GroupSettings", "providers")):
            models += [getattr(plugin, attribute) for _name, plugin in self.plugins[which]]
        keys, schema = models_json_schema([(m, MODE) for m in dict.fromkeys(models)],
                                          ref_template="#/$defs/{model}")
        self.refs = {model: ref["$ref"].rsplit("/", 1)[1] for (model, _), ref in keys.items()}
        self.defs: dict[str, Any] = schema["$defs"]

    def plugin_object(self, model: type[BaseModel]) -> dict[str, Any]:
        """A copy of a plugin model's object schema (its keys sit beside ``kind``)."""
        return copy.deepcopy(self.defs[self.refs[model]])

    def variant(self, model: type[BaseModel], kind: str, what: str, plugin: Any,
                extra: dict[str, Any] | None = None, required: tuple[str, ...] = ()) -> Any:
        """``model``'s keys plus ``kind: <const>`` (and ``extra`` common keys), stored under its
        own ``$defs`` entry and returned as a reference."""
        obj = self.plugin_object(model)
        obj["title"] = f"{what} {kind}"
        summary = _summary(plugin)
        obj["description"] = f"{what} kind {kind!r}" + (f": {summary}" if summary else "")
        kind_schema = {"const": kind, "description": f"the {what} kind"}
        obj["properties"] = {"kind": kind_schema, **(extra or {}), **obj.get("properties", {})}
        obj["required"] = sorted({"kind", *required, *obj.get("required", [])})
        obj["type"] = "object"
        name = f"{what.replace(' ', '_')}__{kind}"
        self.defs[name] = obj
        return {"$ref": f"#/$defs/{name}"}

    def queue(self) -> None:
        variants = [self.variant(plugin.Settings, kind, "queue", plugin)
                    for kind, plugin in self.plugins["sources"]]
        self.defs["QueueBlock"] = {
            "title": "queue", "description": "Where the pool's requests wait: kind and its keys",
            "oneOf": variants}

    def policy(self) -> None:
        kinds = [kind for kind, _plugin in self.plugins["policies"]]
        variants = [self.variant(plugin.Params, kind, "policy", plugin)
                    for kind, plugin in self.plugins["policies"]]
        self.defs["PolicyBlock"] = {
            "title": "policy",
            "description": "A policy kind's name (default parameters), or kind and parameters",
            "oneOf": [{"type": "string", "enum": kinds}, *variants]}
        pool = self.defs["PoolConfig"]["properties"]["policy"]
        pool.pop("default", None)
        pool["description"] = "default: threshold"

    def accounts(self) -> None:
        account = self.defs["ProviderAccount"]["properties"]
        common = {key: account[key] for key in ACCOUNT_COMMON if key in account}
        variants = [self.variant(plugin.AccountSettings, kind, "provider account", plugin,
                                 common)
                    for kind, plugin in self.plugins["providers"]]
        self.defs["ProviderAccount"] = {
            "title": "provider account",
            "description": "A cloud account (or cluster) the groups name with provider:",
            "oneOf": variants}

    def groups(self) -> None:
        group = self.defs["GroupConfig"]
        common = {key: group["properties"][key] for key in GROUP_COMMON}
        common["provider"] = {
            "type": "string",
            "description": "an account of providers:, or a provider kind used directly "
                           f"({', '.join(k for k, _ in self.plugins['providers'])})"}
        variants = []
        for kind, plugin in self.plugins["providers"]:
            obj = self.plugin_object(plugin.GroupSettings)
            obj["title"] = f"group on {kind}"
            obj["description"] = f"a group whose account is of kind {kind!r}"
            obj["properties"] = {**common, **obj.get("properties", {})}
            obj["required"] = sorted({"name", "provider", *obj.get("required", [])})
            obj["type"] = "object"
            self.defs[f"group__{kind}"] = obj
            variants.append({"$ref": f"#/$defs/group__{kind}"})
        self.defs["GroupConfig"] = {
            "title": "group",
            "description": "One instance group: the common keys and its provider kind's keys",
            "anyOf": variants}

    def build(self) -> dict[str, Any]:
        self.queue()
        self.policy()
        self.accounts()
        self.groups()
        root = copy.deepcopy(self.defs[self.refs[Config]])
        root["title"] = "queue-autoscaler config"
        root["description"] = ("The autoscaler's YAML config (autoscaler validate checks what a "
                               "schema cannot: cross-field rules, unique names, plugin keys "
                               "against the account's kind)")
        return {"$schema": SCHEMA_DIALECT, **root, "$defs": self.defs}


def config_schema(registries: dict[str, Registry[Any]] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the config file, plugin blocks included."""
    return _Builder(registries or default_registries()).build()
