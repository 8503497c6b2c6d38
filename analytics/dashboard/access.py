"""Who sees which site: signed-in users (staff see every site, others their memberships) and
shared links (``/share/<token>/``, optionally behind a password kept for 24 hours in a
signed cookie). A site someone may not see is a 404, never a 403 that confirms it exists."""

import functools
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import is_ratelimited

from accounts.models import ShareLink, Site
from infinity.clientip import client_ip

SHARE_COOKIE_AGE = 24 * 3600
_SHARE_SALT = "analytics.dashboard.share"


def visible_sites(user):
    if not user.is_authenticated or not user.is_active:
        return Site.objects.none()
    if user.is_staff:
        return Site.objects.all()
    return Site.objects.filter(memberships__user=user)


@dataclass(frozen=True)
class Viewer:
    """Whose dashboard this is and how its links are made."""

    site: Site
    prefix: str  # "/sites/<domain>/" or "/share/<token>/"
    link: ShareLink | None = None
    can_manage: bool = False  # staff: settings, share links, the admin
    embed: bool = False

    @property
    def shared(self) -> bool:
        return self.link is not None


def share_cookie_name(link: ShareLink) -> str:
    return f"im_share_{link.pk}"


def _password_mark(link: ShareLink) -> str:
    """Ties the cookie to the current password: changing it signs every viewer out."""
    return hmac.new(settings.SECRET_KEY.encode(), link.password_hash.encode(), "sha256").hexdigest()[:32]


def grant_share_cookie(response: HttpResponse, link: ShareLink) -> None:
    response.set_signed_cookie(
        share_cookie_name(link),
        _password_mark(link),
        salt=_SHARE_SALT,
        max_age=SHARE_COOKIE_AGE,
        path=f"/share/{link.token}/",
        httponly=True,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )


def has_share_cookie(request, link: ShareLink) -> bool:
    try:
        value = request.get_signed_cookie(share_cookie_name(link), salt=_SHARE_SALT, max_age=SHARE_COOKIE_AGE)
    except (KeyError, signing.BadSignature):
        return False
    return hmac.compare_digest(value, _password_mark(link))


def active_link(token: str) -> ShareLink:
    link = ShareLink.objects.select_related("site").filter(token=token, revoked_at__isnull=True).first()
    if link is None:
        raise Http404("No such shared link")
    return link


def _data_limited(request, ident: str, rate: int) -> bool:
    return is_ratelimited(request, group="dashboard-data", key=lambda g, r: ident, rate=f"{rate}/m", increment=True)


def too_many(request) -> HttpResponse:
    response = render(request, "dashboard/limited.html", status=429)
    response["Retry-After"] = "60"
    return response


def dashboard_view(*, data: bool = False):
    """Resolve the ``domain`` (signed-in) or ``token`` (shared link) URL argument into
    ``request.viewer``. ``data``: a panel or export, counted against the viewer's own rate limit
    (per user, or per link and client IP), never against an API key's."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, domain=None, token=None, **kwargs):
            if token is not None:
                link = active_link(token)
                if link.has_password and not has_share_cookie(request, link):
                    if data:
                        raise Http404("No such shared link")
                    from .share import password_form  # the form is the shared dashboard's front door

                    return password_form(request, link)
                if data and (
                    _data_limited(request, f"link:{link.pk}", settings.SHARE_RATE_LIMIT)
                    or _data_limited(request, f"ip:{client_ip(request)}", settings.SHARE_RATE_LIMIT)
                ):
                    return too_many(request)
                request.viewer = Viewer(link.site, f"/share/{link.token}/", link=link)
            else:
                if not request.user.is_authenticated:
                    return redirect_to_login(request.get_full_path())
                site = visible_sites(request.user).filter(domain=domain).first()
                if site is None:
                    raise Http404("No such site")
                if data and _data_limited(request, f"user:{request.user.pk}", settings.DASHBOARD_RATE_LIMIT):
                    return too_many(request)
                request.viewer = Viewer(site, f"/sites/{site.domain}/", can_manage=request.user.is_staff)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
