"""A shared link's front door: its password form, limited like every password form
(``accounts.passwords``): per client IP, and per link in place of a username."""

from django import forms
from django.shortcuts import redirect, render

from accounts.models import ShareLink
from accounts.passwords import RefuseWhenLimited, limit_password_guesses

from .access import grant_share_cookie


class PasswordForm(RefuseWhenLimited, forms.Form):
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autofocus": True, "autocomplete": "current-password"}))

    def __init__(self, request, link: ShareLink, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request, self.link = request, link

    def clean(self):
        cleaned = super().clean()
        if "password" in cleaned and not self.link.check_password(cleaned["password"]):
            raise forms.ValidationError("That password is not right.", code="wrong_password")
        return cleaned


def password_form(request, link: ShareLink):
    if request.method == "POST":  # the link counts as the username: its own limit beside the IP's
        request.POST = request.POST.copy()
        request.POST["link"] = f"link:{link.pk}"
    return _password_form(request, link)


@limit_password_guesses(username_field="link")
def _password_form(request, link: ShareLink):
    form = PasswordForm(request, link, request.POST or None)
    if request.method == "POST" and form.is_valid():
        response = redirect(request.get_full_path())
        grant_share_cookie(response, link)
        return response
    # A wrong password is a 403; past the limit the decorator turns the 200 into a 429.
    status = 403 if request.method == "POST" and not request.limited else 200
    return render(request, "dashboard/share_password.html", {"form": form, "link": link}, status=status)
