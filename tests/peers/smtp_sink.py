"""A real SMTP server for the tests (aiosmtpd): each message it accepts is written to DIR as
NNNN.eml, and NNNN.json says what Python's email parser reads in it (envelope recipients,
headers, the decoded text and HTML parts, attachments, each also saved as NNNN-<filename>).
Prints "ready <port>" once listening on 127.0.0.1, and stops when its standard input closes
(the test ended).

    python smtp_sink.py DIR [PORT]
"""

import email
import email.policy
import json
import pathlib
import socket
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        stem = self.folder / f"{self.count:04}"
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        attachments = []
        for part in message.iter_attachments():
            data = part.get_content()
            name = part.get_filename() or "attachment"
            (self.folder / f"{self.count:04}-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())
            attachments.append({"filename": name, "content_type": part.get_content_type(), "size": len(data)})
        summary = {
            "rcpt": envelope.rcpt_tos,
            "from": str(message["From"]),
            "to": str(message["To"]),
            "cc": str(message["Cc"] or ""),
            "subject": str(message["Subject"]),
            "content_type": message.get_content_type(),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "attachments": attachments,
        }
        stem.with_suffix(".eml").write_bytes(raw)
        # Written last: its presence says the message is complete.
        stem.with_suffix(".tmp").write_text(json.dumps(summary))
        stem.with_suffix(".tmp").rename(stem.with_suffix(".json"))
        return "250 Message accepted"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    port = int(sys.argv[2]) if len(sys.argv) > 2 else free_port()
    controller = Controller(Sink(sys.argv[1]), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"ready {port}", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
