"""The web policy: which URLs may load (policy, urls), and its enforcement on every connection the
browser makes (guard: Playwright hooks; socks: the proxy; dns: cached lookups)."""
