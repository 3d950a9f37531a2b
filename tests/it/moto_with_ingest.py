"""moto_server, plus what it lacks to stand in for AWS here.

- The ingest addresses AWS gives MediaLive push inputs: moto keeps an input's destinations as
  the request sent them (a stream name for RTMP_PUSH, nothing for SRT_LISTENER); AWS answers
  with the URL senders use. This fills that URL in, pointing at the test's own server on
  loopback, so the box's feed into MediaLive reaches a real RTMP or SRT peer.
- The MediaPackage v2 channel route without a trailing slash: moto 5.2.5 routes a channel only
  with the slash of the API model it was built from, while the Rust SDK sends the current
  model's path without it (moto answered 400).

Everything else is moto as installed.

Usage: python moto_with_ingest.py HOST:PORT [moto_server arguments...]
"""

import sys

import moto.mediapackagev2.urls as mediapackagev2_urls
from moto.medialive.models import MediaLiveBackend
from moto.server import main

mediapackagev2_urls.url_paths[
    "{0}/channelGroup/(?P<ChannelGroupName>[^/]+)/channel/(?P<ChannelName>[^/]+)$"
] = mediapackagev2_urls.mediapackagev2Response.dispatch

INGEST = sys.argv.pop(1)
_create_input = MediaLiveBackend.create_input
_update_input = MediaLiveBackend.update_input


def with_ingest(found):
    if found.type == "RTMP_PUSH":
        found.destinations = [
            {"Url": f"rtmp://{INGEST}/{d['StreamName']}"}
            for d in found.destinations or []
            if d.get("StreamName")
        ]
    elif found.type == "SRT_LISTENER":
        found.destinations = [{"Url": f"srt://{INGEST}"}]
    return found


def create_input(self, *args, **kwargs):
    return with_ingest(_create_input(self, *args, **kwargs))


def update_input(self, *args, **kwargs):
    return with_ingest(_update_input(self, *args, **kwargs))


MediaLiveBackend.create_input = create_input
MediaLiveBackend.update_input = update_input
main(sys.argv[1:])
