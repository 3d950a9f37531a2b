"""moto_server, plus the ingest addresses AWS gives MediaLive push inputs.

moto keeps an input's destinations as the request sent them (a stream name for RTMP_PUSH,
nothing for SRT_LISTENER); AWS answers with the URL senders use. This fills that URL in, pointing
at the test's own server on loopback, so the box's feed into MediaLive reaches a real RTMP or
SRT peer. Everything else is moto as installed.

Usage: python moto_with_ingest.py HOST:PORT [moto_server arguments...]
"""

import sys

from moto.medialive.models import MediaLiveBackend
from moto.server import main

INGEST = sys.argv.pop(1)
_create_input = MediaLiveBackend.create_input


def create_input(self, *args, **kwargs):
    created = _create_input(self, *args, **kwargs)
    if created.type == "RTMP_PUSH":
        created.destinations = [
            {"Url": f"rtmp://{INGEST}/{d['StreamName']}"}
            for d in created.destinations or []
            if d.get("StreamName")
        ]
    elif created.type == "SRT_LISTENER":
        created.destinations = [{"Url": f"srt://{INGEST}"}]
    return created


MediaLiveBackend.create_input = create_input
main(sys.argv[1:])
