"""Text sessions: JSON prompts, one reply stream per prompt, as realtime LLM endpoints answer.

locust -f loadtest/ --host ws://127.0.0.1:8080 --headless -u 10 -r 5 -t 30s TextSessions
"""

from sagebidi_perf.loadtest.users import TextUser


class TextSessions(TextUser):
    """--prompts-per-session prompts from --prompts (JSON lines); a reply ends at a message whose
    JSON type is in --text-done-types."""
