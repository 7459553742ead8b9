"""Languages of the pages: gettext catalogues (Babel), chosen by a remembered switch or the browser.

The catalogues are the committed `locales/<lang>/LC_MESSAGES/messages.po` files, compiled in memory
the first time a language is used: a fresh clone needs no build step and never serves a stale .mo.
"""

from __future__ import annotations

import gettext
import io
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from babel.core import Locale, negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from markupsafe import Markup, escape

LANGUAGES = ("en", "bn")
NAMES = {"en": "English", "bn": "বাংলা"}
DEFAULT = "en"
COOKIE = "exchange_lang"
LOCALES = Path(__file__).parent / "locales"


@lru_cache(maxsize=len(LANGUAGES))
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalogue of `lang` (English is the source language: an English message
    without a translation is shown as written)."""
    po = LOCALES / lang / "LC_MESSAGES" / "messages.po"
    if lang not in LANGUAGES or not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The remembered choice, else the browser's preferred language we have, else English."""
    if cookie is not None and cookie in LANGUAGES:
        return cookie
    preferred = []
    for part in (accept_language or "")[:500].split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            preferred.append((quality, tag.strip().replace("_", "-")))
    ordered = [tag for q, tag in sorted(preferred, key=lambda p: -p[0]) if q > 0]
    found = negotiate_locale(ordered, list(LANGUAGES), sep="-")
    return found if found in LANGUAGES else DEFAULT


def when(moment: datetime | str | None) -> Markup:
    """A time in UTC, as a <time> element the page's script adds the reader's local time beside."""
    if moment is None or moment == "":
        return Markup("—")
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return Markup(escape(moment))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    # isoformat, not strftime("%Y"): that writes year 1 as "1" on Linux
    stamp = moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    shown = moment.replace(tzinfo=None).isoformat(sep=" ", timespec="minutes") + " UTC"
    return Markup('<time datetime="{}">{}</time>').format(stamp, shown)


def direction(lang: str) -> str:
    return Locale.parse(lang).text_direction


def N_(message: str) -> str:  # noqa: N802  (the gettext convention)
    """Marks a message for extraction whose text is chosen at run time (a status, a role)."""
    return message


# Words the pages show from data: roles, states, feed health and run status, preview reasons.
DYNAMIC = (
    N_("admin"), N_("analyst"), N_("active"), N_("suspended"), N_("draft"), N_("expired"),
    N_("revoked"), N_("current"), N_("next"), N_("retired"), N_("healthy"), N_("unhealthy"),
    N_("unknown"), N_("new"), N_("failing"), N_("running"), N_("ok"), N_("failed"), N_("partial"), N_("abandoned"),
    N_("low"), N_("medium"), N_("high"), N_("critical"), N_("tlp"), N_("type"), N_("confidence"),
    N_("embargo"), N_("audience"), N_("references"), N_("originator"), N_("relay"), N_("collection"),
    N_("not_in_force"),
)  # fmt: skip
