"""A shared link's front door: its password form, limited per client IP and per link."""

from django import forms
from django.shortcuts import redirect, render

from accounts.models import ShareLink

from .access import grant_share_cookie
from .passwords import LIMITED_MESSAGE, attempts_exceeded


class PasswordForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autofocus": True, "autocomplete": "current-password"}))


def password_form(request, link: ShareLink):
    form = PasswordForm(request.POST or None)
    status, error = 200, None
    if request.method == "POST":
        if attempts_exceeded(request, subject=f"link:{link.pk}"):
            status, error = 429, LIMITED_MESSAGE
        elif form.is_valid() and link.check_password(form.cleaned_data["password"]):
            response = redirect(request.get_full_path())
            grant_share_cookie(response, link)
            return response
        else:
            status, error = 403, "That password is not right."
    return render(request, "dashboard/share_password.html", {"form": form, "link": link, "error": error}, status=status)
