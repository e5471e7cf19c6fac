"""Captioning (`esi caption`): evidence -> prompt -> answer from the offline template provider or any litellm
model, with a persistent answer cache, retries, budgets and a privacy guard.

Modules: evidence (what a caption may say), prompt (versioned templates), template_provider (offline
captions), llm (robust litellm calls), cache (SQLite answer cache), privacy (identifiers, credentialed data,
secrets), run (the command's pipeline and the artifact).
"""
