"""Speech sessions: WAV clips streamed as linear16 at real-time pace to a Deepgram-compatible
``v1/listen`` (``sagebidi serve --model transcribe``), then Finalize + CloseStream.

    locust -f loadtest/ --host ws://127.0.0.1:8080 --headless -u 20 -r 5 -t 30s SpeechSessions
"""

from sagebidi_perf.loadtest.users import SpeechUser


class SpeechSessions(SpeechUser):
    """One clip per session, back to back (options: --audio, --chunk-ms, --pace, --model-query)."""
