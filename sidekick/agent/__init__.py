"""The agent's LangGraph: worker, tools and evaluator (graph), its state, its prompts, and the
per-run context the nodes receive (context)."""
