"""Shared OpenAPI pieces: the error envelope every endpoint may answer with."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.JSONField(),
            },
        )
    },
)

ERROR_RESPONSES: dict[int, Any] = {
    code: OpenApiResponse(ErrorSerializer, description=text)
    for code, text in (
        (400, "Invalid input"),
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (404, "Not found"),
        (409, "Conflict (e.g. room full)"),
        (410, "Gone (room ended)"),
        (429, "Too many requests"),
    )
}


# --- OpenAPI links: how one operation's answer feeds the next (docs, and schemathesis' stateful run) --------------
# (source operation, status) -> {link name: (target operation, parameters, request body or None)}.
# Values are OpenAPI runtime expressions; a link from a list takes its first item.
_ROOM = {"room_id": "$response.body#/roomId"}
_SAME_ROOM = {"room_id": "$request.path.room_id"}
_FIRST_ROOM = {"room_id": "$response.body#/0/roomId"}
_RECORDING = {"recording_id": "$response.body#/recordingId"}
_FIRST_RECORDING = {"recording_id": "$response.body#/0/recordingId"}
_SAME_RECORDING = {"recording_id": "$request.path.recording_id"}
_ROOM_OPERATIONS = {
    "GetRoom": "rooms_retrieve",
    "UpdateRoom": "rooms_update",
    "JoinRoom": "rooms_join",
    "ChatHistory": "rooms_chat_list",
    "StartRecording": "rooms_record",
    "RoomRecordings": "rooms_recordings",
    "EndRoom": "rooms_end",
    "RoomBreakouts": "rooms_breakouts_retrieve",
    "OpenBreakouts": "rooms_breakouts_create",
    "AssignBreakout": "rooms_breakouts_assign",
    "BroadcastToBreakouts": "rooms_breakouts_broadcast",
    "CloseBreakouts": "rooms_breakouts_close",
}
_RECORDING_OPERATIONS = {
    "GetRecording": "recordings_retrieve",
    "StopRecording": "recordings_stop",
    "RetryRecording": "recordings_retry",
    "RecordingShares": "recordings_shares_list",
    "ShareRecording": "recordings_shares_create",
}
_MEETING = {"meeting_id": "$response.body#/meetingId"}
_FIRST_MEETING = {"meeting_id": "$response.body#/0/meetingId"}
_MEETING_OPERATIONS = {
    "GetMeeting": "meetings_retrieve",
    "UpdateMeeting": "meetings_update",
    "CancelMeeting": "meetings_cancel",
}
LinkTarget = tuple[str, dict[str, str], dict[str, str] | None]
LINKS: dict[tuple[str, str], dict[str, LinkTarget]] = {
    ("auth_register", "201"): {
        "SignIn": (
            "auth_token",
            {},
            {"username": "$response.body#/username", "password": "$request.body#/password"},
        ),
        "RefreshToken": ("auth_token_refresh", {}, {"refresh": "$response.body#/refresh"}),
    },
    ("auth_token", "200"): {"RefreshToken": ("auth_token_refresh", {}, {"refresh": "$response.body#/refresh"})},
    ("rooms_create", "201"): {name: (op, _ROOM, None) for name, op in _ROOM_OPERATIONS.items()},
    ("rooms_list", "200"): {name: (op, _FIRST_ROOM, None) for name, op in _ROOM_OPERATIONS.items()},
    ("rooms_retrieve", "200"): {name: (op, _ROOM, None) for name, op in _ROOM_OPERATIONS.items() if name != "GetRoom"},
    ("rooms_update", "200"): {"GetRoom": ("rooms_retrieve", _ROOM, None), "JoinRoom": ("rooms_join", _ROOM, None)},
    ("rooms_breakouts_create", "201"): {
        "AssignBreakout": ("rooms_breakouts_assign", _SAME_ROOM, None),
        "BroadcastToBreakouts": ("rooms_breakouts_broadcast", _SAME_ROOM, None),
        "CloseBreakouts": ("rooms_breakouts_close", _SAME_ROOM, None),
        "RoomBreakouts": ("rooms_breakouts_retrieve", _SAME_ROOM, None),
    },
    ("rooms_end", "200"): {"GetRoom": ("rooms_retrieve", _ROOM, None), "JoinRoom": ("rooms_join", _ROOM, None)},
    ("meetings_create", "201"): {
        **{name: (op, _MEETING, None) for name, op in _MEETING_OPERATIONS.items()},
        "JoinMeetingRoom": ("rooms_join", {"room_id": "$response.body#/roomId"}, None),
    },
    ("meetings_list", "200"): {name: (op, _FIRST_MEETING, None) for name, op in _MEETING_OPERATIONS.items()},
    ("meetings_retrieve", "200"): {
        name: (op, _MEETING, None) for name, op in _MEETING_OPERATIONS.items() if name != "GetMeeting"
    },
    ("meetings_update", "200"): {
        name: (op, _MEETING, None) for name, op in _MEETING_OPERATIONS.items() if name != "UpdateMeeting"
    },
    ("rooms_join", "200"): {
        "ChatHistory": ("rooms_chat_list", _ROOM, None),
        "AllowRejoin": (
            "rooms_removals_delete",
            {**_ROOM, "participant_id": "$response.body#/participantId"},
            None,
        ),
    },
    ("rooms_record", "201"): {name: (op, _RECORDING, None) for name, op in _RECORDING_OPERATIONS.items()},
    ("rooms_recordings", "200"): {name: (op, _FIRST_RECORDING, None) for name, op in _RECORDING_OPERATIONS.items()},
    ("recordings_retrieve", "200"): {
        name: (op, _RECORDING, None) for name, op in _RECORDING_OPERATIONS.items() if name != "GetRecording"
    },
    ("recordings_shares_create", "201"): {
        "Unshare": ("recordings_shares_delete", {**_SAME_RECORDING, "username": "$response.body#/username"}, None),
        "RecordingShares": ("recordings_shares_list", _SAME_RECORDING, None),
    },
    ("recordings_shares_list", "200"): {
        "Unshare": ("recordings_shares_delete", {**_SAME_RECORDING, "username": "$response.body#/0/username"}, None),
    },
}


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: put ``LINKS`` into the responses they start from.

    A link to an operation that is not in the schema fails loudly (a renamed ``operation_id``)."""
    operations = {
        op["operationId"]: op for item in result["paths"].values() for op in item.values() if isinstance(op, dict)
    }
    for (source, status), links in LINKS.items():
        response = operations[source]["responses"][status]
        response["links"] = {}
        for name, (target, parameters, body) in links.items():
            if target not in operations:
                raise KeyError(f"OpenAPI link {source} -> {name}: no operation {target}")
            link: dict[str, Any] = {"operationId": target}
            if parameters:
                link["parameters"] = parameters
            if body is not None:
                link["requestBody"] = body
            response["links"][name] = link
    return result
