"""A tool's arguments as a Django form, built from their JSON schema (no engine, no I/O).

The fields follow the schema Pydantic AI gives for the tool: an ``enum`` is a choice,
``boolean`` a checkbox, ``integer`` and ``number`` number inputs (with the schema's
``minimum`` and ``maximum``), ``string`` a text input (with its ``maxLength``), and
anything else (objects, lists, unions such as ``int | None``) a JSON text area. Each
starts at the model's value. An argument is sent when the model gave it, when the
schema requires it, or when it was filled in; an optional field left empty leaves the
argument out, so the tool's default applies. The engine checks the result against the
schema again before it keeps the decision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django import forms

__all__ = ["PREFIX", "ArgumentsForm", "RejectForm", "resolve"]

#: the fields' names are ``args-<argument>``, clear of the page's own (``_decision``...)
PREFIX = "args"
#: the longest reason the engine keeps
REASON_LENGTH = 4000


def resolve(schema: Mapping[str, Any], rule: Mapping[str, Any]) -> Mapping[str, Any]:
    """``rule`` with a local ``$ref`` followed (Pydantic puts nested models in ``$defs``)."""
    ref = rule.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found = (schema.get("$defs") or {}).get(ref.removeprefix("#/$defs/"))
        return found if isinstance(found, Mapping) else {}
    return rule


class JsonField(forms.CharField):
    """Any JSON value, typed as JSON; empty is no value (``None`` here), ``null`` is null."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def __init__(self, **options: Any) -> None:
        super().__init__(strip=False, **options)

    def prepare_value(self, value: Any) -> Any:
        return value  # the initial value is JSON text already

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value) or ""
        if not text.strip():
            return None
        try:
            return [json.loads(text)]  # boxed: null typed in is a value, unlike empty
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} ({where}).") from None


class ArgumentsForm(forms.Form):
    """One field per argument of the tool (the schema's properties and the model's arguments).

    Args:
        schema: the JSON schema of the tool's arguments (None: the model's arguments, as JSON).
        args: the arguments the model gave, the fields' initial values.
        data: the POST to read, or None for the form as first shown.
    """

    def __init__(
        self,
        schema: Mapping[str, Any] | None,
        args: Mapping[str, Any],
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(data, prefix=PREFIX)
        self.schema: Mapping[str, Any] = schema or {}
        self.given = dict(args)
        properties = self.schema.get("properties")
        self.rules: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
        self.required = {str(n) for n in self.schema.get("required") or ()}
        for name in dict.fromkeys([*self.rules, *self.given]):
            rule = self.rules.get(name)
            self.fields[name] = self._field(
                name, resolve(self.schema, rule if isinstance(rule, Mapping) else {})
            )

    def _field(self, name: str, rule: Mapping[str, Any]) -> forms.Field:
        required = name in self.required
        value = self.given.get(name, rule.get("default"))
        described: dict[str, Any] = {"label": name, "help_text": str(rule.get("description") or "")}
        kind = rule.get("type")
        if isinstance(rule.get("enum"), list):
            options = [(json.dumps(v), str(v)) for v in rule["enum"]]
            if not required:
                options.insert(0, ("", "---------"))
            initial = json.dumps(value) if name in self.given or "default" in rule else ""
            return forms.ChoiceField(
                choices=options, required=required, initial=initial, **described
            )
        if kind == "boolean":
            return forms.BooleanField(required=False, initial=bool(value), **described)
        if kind in ("integer", "number"):
            limits = {
                key: rule[bound]
                for key, bound in (("min_value", "minimum"), ("max_value", "maximum"))
                if isinstance(rule.get(bound), int | float)
            }
            number: type[forms.Field] = forms.FloatField
            if kind == "integer":
                number = forms.IntegerField
            return number(required=required, initial=value, **limits, **described)
        if kind == "string":
            length = rule.get("maxLength")
            return forms.CharField(
                required=False,  # an empty string is a string: the engine judges it
                strip=False,
                initial=value,
                max_length=length if isinstance(length, int) else None,
                widget=forms.TextInput(attrs={"size": 60}),
                **described,
            )
        shown = json.dumps(value, indent=2) if name in self.given or "default" in rule else ""
        return JsonField(required=required, initial=shown, **described)

    def arguments(self) -> dict[str, Any]:
        """The arguments a valid form gives the tool."""
        out: dict[str, Any] = {}
        for name, field in self.fields.items():
            value: Any = self.cleaned_data.get(name)
            if isinstance(field, forms.ChoiceField):
                value = json.loads(value) if value else None
                filled = bool(self.cleaned_data.get(name))
            elif isinstance(field, JsonField):
                filled = value is not None
                value = value[0] if filled else None
            elif isinstance(field, forms.BooleanField):
                filled = bool(value)
            elif isinstance(field, forms.CharField):
                filled = value != ""
            else:  # numbers
                filled = value is not None
                if isinstance(value, float) and value.is_integer():
                    value = int(value)  # 5, not 5.0: the same JSON number
            if filled or name in self.given or name in self.required:
                out[name] = value
        return out

    def edited(self) -> bool:
        """Whether a valid form's arguments differ from the model's."""
        return self.arguments() != self.given


class RejectForm(forms.Form):
    """A rejection's reason: the model is told it."""

    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Told to the model, which goes on without the tool call.",
    )
