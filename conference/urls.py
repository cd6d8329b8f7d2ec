from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from breakouts import apis as breakout_apis
from chat.apis import ChatHistoryApi
from conference import accounts, internal, metrics
from conference.api_docs import redoc_view, swagger_view
from meetings import apis as meeting_apis
from meetings import views as meeting_views
from recordings import apis as recording_apis
from recordings.downloads import recording_file
from rooms import apis as room_apis
from rooms import views as room_views

handler400 = "conference.exception_handler.handler400"
handler403 = "conference.exception_handler.handler403"
handler404 = "conference.exception_handler.handler404"
handler500 = "conference.exception_handler.handler500"

api_v1 = [
    path("auth/register", accounts.RegisterApi.as_view(), name="api-register"),
    path("auth/token", accounts.TokenObtainApi.as_view(), name="api-token"),
    path("auth/token/refresh", accounts.TokenRefreshApi.as_view(), name="api-token-refresh"),
    path("rooms", room_apis.RoomListCreateApi.as_view(), name="api-rooms"),
    path("rooms/<str:room_id>", room_apis.RoomDetailApi.as_view(), name="api-room"),
    path("rooms/<str:room_id>/join", room_apis.RoomJoinApi.as_view(), name="api-room-join"),
    path("rooms/<str:room_id>/end", room_apis.RoomEndApi.as_view(), name="api-room-end"),
    path(
        "rooms/<str:room_id>/removals/<str:participant_id>",
        room_apis.RoomRemovalDeleteApi.as_view(),
        name="api-room-removal",
    ),
    path("rooms/<str:room_id>/chat", ChatHistoryApi.as_view(), name="api-room-chat"),
    path("rooms/<str:room_id>/breakouts", breakout_apis.BreakoutsApi.as_view(), name="api-room-breakouts"),
    path(
        "rooms/<str:room_id>/breakouts/assign",
        breakout_apis.BreakoutAssignApi.as_view(),
        name="api-room-breakouts-assign",
    ),
    path(
        "rooms/<str:room_id>/breakouts/broadcast",
        breakout_apis.BreakoutBroadcastApi.as_view(),
        name="api-room-breakouts-broadcast",
    ),
    path(
        "rooms/<str:room_id>/breakouts/close", breakout_apis.BreakoutCloseApi.as_view(), name="api-room-breakouts-close"
    ),
    path("rooms/<str:room_id>/record", recording_apis.RecordingStartApi.as_view(), name="api-room-record"),
    path("rooms/<str:room_id>/recordings", recording_apis.RoomRecordingListApi.as_view(), name="api-room-recordings"),
    path("recordings/<str:recording_id>", recording_apis.RecordingDetailApi.as_view(), name="api-recording"),
    path("recordings/<str:recording_id>/stop", recording_apis.RecordingStopApi.as_view(), name="api-recording-stop"),
    path("recordings/<str:recording_id>/retry", recording_apis.RecordingRetryApi.as_view(), name="api-recording-retry"),
    path(
        "recordings/<str:recording_id>/shares",
        recording_apis.RecordingShareListCreateApi.as_view(),
        name="api-recording-shares",
    ),
    path(
        "recordings/<str:recording_id>/shares/<str:username>",
        recording_apis.RecordingShareDeleteApi.as_view(),
        name="api-recording-share",
    ),
    path("meetings", meeting_apis.MeetingListCreateApi.as_view(), name="api-meetings"),
    path("meetings/<str:meeting_id>", meeting_apis.MeetingDetailApi.as_view(), name="api-meeting"),
    path("meetings/<str:meeting_id>/cancel", meeting_apis.MeetingCancelApi.as_view(), name="api-meeting-cancel"),
]

urlpatterns = [
    path("", room_views.home, name="home"),
    path("join/<str:room_id>", room_views.join, name="join"),
    path("rooms/", room_views.my_rooms, name="my-rooms"),
    path("rooms/<str:room_id>/settings", room_views.room_settings, name="room-settings"),
    path("rooms/<str:room_id>/recordings", room_views.room_recordings, name="room-recordings"),
    path("meetings/", meeting_views.my_meetings, name="my-meetings"),
    path("meetings/new", meeting_views.meeting_new, name="meeting-new"),
    path("meetings/<str:meeting_id>/edit", meeting_views.meeting_edit, name="meeting-edit"),
    path("meetings/<str:meeting_id>/cancel", meeting_views.meeting_cancel, name="meeting-cancel"),
    path("accounts/login/", accounts.ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", accounts.signup_view, name="signup"),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", swagger_view, name="api-docs"),
    path("api/redoc/", redoc_view, name="api-redoc"),
    path("internal/media/v1/events", internal.media_events, name="media-events"),
    path("healthz", internal.health, name="health"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("recordings/files/<str:token>", recording_file, name="recording-file"),
]
