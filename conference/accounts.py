"""Accounts: REST registration and the web sign-up page (login/logout are Django's)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, login, password_validation
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from drf_spectacular.utils import extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from conference import throttles
from conference.errors import Conflict, DomainError
from conference.schema import ERROR_RESPONSES

User = get_user_model()


@transaction.atomic
def user_register(*, username: str, password: str, email: str = "", display_name: str = "") -> Any:
    """Create an account; the password must pass Django's validators."""
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict("This username is taken.", code="username_taken")
    candidate = User(username=username, email=email, first_name=display_name)
    try:
        password_validation.validate_password(password, candidate)
    except ValidationError as exc:
        raise DomainError("The password is too weak.", code="weak_password", reasons=list(exc.messages)) from exc
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError as exc:
        raise Conflict("This username is taken.", code="username_taken") from exc
    return candidate


class RegisterApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = [throttles.AddressThrottle]

    @extend_schema_serializer(component_name="RegisterInput")
    class InputSerializer(serializers.Serializer[Any]):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150, min_length=1)
        password = serializers.CharField(max_length=128, min_length=1, trim_whitespace=False)
        email = serializers.EmailField(required=False, default="", allow_blank=True)
        display_name = serializers.CharField(max_length=80, required=False, default="", allow_blank=True)

    @extend_schema_serializer(component_name="RegisterOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        id = serializers.IntegerField()
        username = serializers.CharField()
        access = serializers.CharField()
        refresh = serializers.CharField()

    @extend_schema(
        operation_id="auth_register", request=InputSerializer, responses={201: OutputSerializer, **ERROR_RESPONSES}
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_register(**data.validated_data)
        refresh = RefreshToken.for_user(user)
        body = {"id": user.pk, "username": user.username, "access": str(refresh.access_token), "refresh": str(refresh)}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class SignupForm(UserCreationForm):  # type: ignore[type-arg]
    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined,misc]
        model = User
        fields = ("username",)


def signup_view(request: HttpRequest) -> HttpResponse:
    """Web sign-up with the standard username/password1/password2 fields; logs the new user in."""
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        next_url = request.POST.get("next") or request.GET.get("next") or "/"
        return redirect(next_url if next_url.startswith("/") and not next_url.startswith("//") else "/")
    return render(request, "registration/signup.html", {"form": form, "next": request.GET.get("next", "")})


class ThrottledLoginView(LoginView):
    """Django's login view; failed sign-ins count per address and per account name (``throttles.login_limits``).

    A throttled sign-in answers 429 with the form and a message, without checking (hashing) the password.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limits = throttles.login_limits(request, str(request.POST.get("username", "")))
        try:
            throttles.check(request, *limits)
        except throttles.Throttled as exc:
            form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")[:150]})
            context = self.get_context_data(form=form, throttled=exc.message)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        self._limits = limits
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        throttles.record_failure(self.request, *self._limits)
        return super().form_invalid(form)


@extend_schema_view(
    post=extend_schema(operation_id="auth_token", responses={200: TokenObtainPairSerializer, **ERROR_RESPONSES})
)
class TokenObtainApi(TokenObtainPairView):
    """Trade username + password for a JWT access/refresh pair."""

    throttle_classes = [throttles.AddressThrottle]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Failed attempts count per address and per account; a throttled one is refused before hashing."""
        username = request.data.get("username") if isinstance(request.data, dict) else None
        limits = throttles.login_limits(request._request, username if isinstance(username, str) else "")
        throttles.check(request._request, *limits)
        try:
            return super().post(request, *args, **kwargs)
        except (AuthenticationFailed, InvalidToken):
            throttles.record_failure(request._request, *limits)
            raise


@extend_schema_view(
    post=extend_schema(operation_id="auth_token_refresh", responses={200: TokenRefreshSerializer, **ERROR_RESPONSES})
)
class TokenRefreshApi(TokenRefreshView):
    """Trade a refresh token for a new access token."""
