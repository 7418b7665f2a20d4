"""The browser: finding Chromium (chromium), the process's pool with its warm spare (pool), and one
session's context and page (context)."""
