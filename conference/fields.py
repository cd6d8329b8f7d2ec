"""Serializer fields stricter than DRF's defaults, so the API accepts exactly what its schema says."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictBooleanField(serializers.BooleanField):
    """A JSON ``true``/``false`` only: DRF's ``BooleanField`` also takes ``0``, ``1``, ``"yes"``, ``"on"``…,
    which the OpenAPI schema (``type: boolean``) does not allow."""

    default_error_messages = {"invalid": "Must be true or false (a JSON boolean)."}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid")
        raise AssertionError("unreachable")  # self.fail raises
