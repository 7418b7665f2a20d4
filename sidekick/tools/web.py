"""Web search through Serper and article look-ups through Wikipedia's MediaWiki API.

Both return outside text, so it reaches the model wrapped by :func:`~sidekick.tools.base.untrusted`.
``web_search`` is built only when ``SERPER_API_KEY`` is set; ``wikipedia`` needs no key. Every call
opens its own HTTP client under the tool timeout, and every failure becomes a plain
:class:`~sidekick.errors.ToolError` that never contains the API key.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from langchain_core.tools import BaseTool, StructuredTool

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools.base import Availability, ToolContext, untrusted

SERPER_URL = "https://google.serper.dev/search"
# ``{lang}`` is the Wikipedia language code, e.g. ``en``.
WIKIPEDIA_URL = "https://{lang}.wikipedia.org/w/api.php"
# Wikimedia asks every client to identify itself.
USER_AGENT = "Sidekick/0.1 (personal agent)"
SEARCH_RESULTS = 5
WIKIPEDIA_HITS = 3
WIKIPEDIA_CHARS = 4000

# The language code becomes part of a host name, so only plain codes ("en", "zh-yue", "simple") pass.
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z]{2,8})*|simple")
_SERPER_HINTS = {
    401: " (check SERPER_API_KEY)",
    403: " (check SERPER_API_KEY)",
    429: " (too many searches or no credits left; try again later)",
}


def available(settings: Settings) -> list[Availability]:
    keyed = bool(settings.serper_api_key)
    return [
        ("web_search", keyed, "" if keyed else "set SERPER_API_KEY"),
        ("wikipedia", True, ""),
    ]


def build(ctx: ToolContext, *, serper_url: str = SERPER_URL, wikipedia_url: str = WIKIPEDIA_URL) -> list[BaseTool]:
    """``web_search`` when a Serper key is set, and ``wikipedia`` always."""
    timeout = ctx.settings.tool_timeout_seconds
    api_key = ctx.settings.serper_api_key or ""

    async def web_search(query: str) -> str:
        query = query.strip()
        if not query:
            raise ToolError("Web search needs a query.")
        data = await _request_json(
            "POST",
            serper_url,
            failure="Web search failed",
            service="the search service",
            timeout=timeout,
            hints=_SERPER_HINTS,
            headers={"X-API-KEY": api_key},
            json={"q": query, "num": SEARCH_RESULTS},
        )
        text = _format_search(data)
        if not text:
            raise ToolError(f"Web search found nothing for {query!r}; try other words.")
        return untrusted(text, source="web search")

    async def wikipedia(query: str, language: str = "en") -> str:
        query = query.strip()
        if not query:
            raise ToolError("Wikipedia needs something to look up.")
        if not _LANGUAGE.fullmatch(language):
            raise ToolError(f"{language[:20]!r} is not a Wikipedia language code such as 'en' or 'de'.")
        url = wikipedia_url.format(lang=language)
        found = await _wikipedia_query(
            url,
            timeout,
            {"action": "query", "list": "search", "srsearch": query, "srlimit": WIKIPEDIA_HITS},
        )
        hits = found.get("search")
        titles = [
            hit["title"]
            for hit in (hits if isinstance(hits, list) else [])
            if isinstance(hit, dict) and isinstance(hit.get("title"), str)
        ]
        if not titles:
            raise ToolError(f"Wikipedia has no article matching {query!r}; try other words.")
        # ``exintro`` is left out on purpose: MediaWiki reads any value of it, even 0, as "intro only".
        pages = (
            await _wikipedia_query(
                url,
                timeout,
                {"action": "query", "prop": "extracts", "explaintext": 1, "titles": titles[0], "redirects": 1},
            )
        ).get("pages")
        page = next(iter(pages.values()), None) if isinstance(pages, dict) else None
        extract = page.get("extract") if isinstance(page, dict) else None
        if not isinstance(page, dict) or not isinstance(extract, str) or not extract.strip():
            raise ToolError(f"Wikipedia has no text for the article {titles[0]!r}.")
        title = str(page.get("title") or titles[0])
        link = f"https://{language}.wikipedia.org/wiki/{quote(title.replace(' ', '_'))}"
        head = [title, link]
        if len(titles) > 1:
            head.append("Other matches: " + "; ".join(titles[1:]))
        return untrusted("\n".join(head) + "\n\n" + extract.strip(), source="Wikipedia", limit=WIKIPEDIA_CHARS)

    tools: list[BaseTool] = []
    if api_key:
        tools.append(
            StructuredTool.from_function(
                coroutine=web_search,
                name="web_search",
                description=(
                    "Search the web (Google, through Serper). Returns the top results with title, link "
                    "and snippet, plus a direct answer when there is one. Use it for current facts and "
                    "to find pages worth opening in the browser."
                ),
            )
        )
    tools.append(
        StructuredTool.from_function(
            coroutine=wikipedia,
            name="wikipedia",
            description=(
                "Look a topic up on Wikipedia. Returns the best-matching article as plain text "
                f"(up to {WIKIPEDIA_CHARS} characters) with its URL and the other close matches. "
                "`language` is a Wikipedia language code such as 'en' or 'de'."
            ),
        )
    )
    return tools


async def _request_json(
    method: str,
    url: str,
    *,
    failure: str,
    service: str,
    timeout: float,
    hints: Mapping[int, str] | None = None,
    **kwargs: Any,
) -> Any:
    """One request with its own client and a total time budget; any failure is a plain ToolError."""
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(timeout=timeout, headers={"User-Agent": USER_AGENT}) as client,
        ):
            response = await client.request(method, url, **kwargs)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ToolError(f"{failure}: {service} did not answer within {timeout:g} seconds.") from exc
    except httpx.HTTPError as exc:
        # The exception's text is left out: it is not written for users.
        raise ToolError(f"{failure}: could not reach {service} ({type(exc).__name__}).") from exc
    if response.status_code != 200:
        hint = (hints or {}).get(response.status_code, "")
        raise ToolError(f"{failure}: {service} answered {response.status_code}{hint}.")
    try:
        return response.json()
    except ValueError as exc:
        raise ToolError(f"{failure}: {service} sent an answer that is not JSON.") from exc


async def _wikipedia_query(url: str, timeout: float, params: dict[str, Any]) -> dict[str, Any]:
    """The ``query`` part of a MediaWiki answer; an API error becomes a ToolError."""
    data = await _request_json(
        "GET",
        url,
        failure="Wikipedia failed",
        service="Wikipedia",
        timeout=timeout,
        params={**params, "format": "json"},
    )
    if not isinstance(data, dict):
        raise ToolError("Wikipedia failed: Wikipedia sent an answer of an unexpected shape.")
    error = data.get("error")
    if isinstance(error, dict):
        info = _clean(error.get("info")).rstrip(".") or "the API reported an error"
        raise ToolError(f"Wikipedia failed: {info}.")
    query = data.get("query")
    return query if isinstance(query, dict) else {}


def _format_search(data: Any) -> str:
    """Serper's answer as compact lines: direct answer, knowledge graph, then numbered results."""
    if not isinstance(data, dict):
        raise ToolError("Web search failed: the search service sent an answer of an unexpected shape.")
    lines: list[str] = []
    box = data.get("answerBox")
    if isinstance(box, dict):
        answer = _clean(box.get("answer")) or _clean(box.get("snippet"))
        if answer:
            link = _clean(box.get("link"))
            lines.append(f"Answer: {answer}" + (f" ({link})" if link else ""))
    graph = data.get("knowledgeGraph")
    if isinstance(graph, dict) and _clean(graph.get("title")):
        name = _clean(graph.get("title"))
        kind = _clean(graph.get("type"))
        description = _clean(graph.get("description"))
        lines.append(f"About: {name}" + (f" ({kind})" if kind else "") + (f": {description}" if description else ""))
    organic = data.get("organic")
    results = [item for item in (organic if isinstance(organic, list) else []) if isinstance(item, dict)]
    for number, item in enumerate(results[:SEARCH_RESULTS], start=1):
        lines.append(f"{number}. {_clean(item.get('title')) or '(untitled)'}")
        for field in ("link", "snippet"):
            value = _clean(item.get(field))
            if value:
                lines.append(f"   {value}")
    return "\n".join(lines)


def _clean(value: Any) -> str:
    """A JSON value as one line of text ("" for missing or non-text values)."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return ""
    return " ".join(str(value).split())
