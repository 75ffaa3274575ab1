"""A bare paho-mqtt publisher: the yardstick for the bridge's own publishing.

    python bench/bare_publisher.py <port> <messages file>

Reads `topic<TAB>payload` lines, connects to the broker with the bridge's own
settings (QoS 1, retained, 100 messages in flight, TCP_NODELAY), prints
`time.monotonic()` just before the first publish, publishes every message as fast
as paho takes them, and exits once the broker has acknowledged them all.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import paho.mqtt.client as paho


def main(port: int, path: str) -> None:
    messages = []
    with open(path, "rb") as file:
        for line in file:
            topic, payload = line.rstrip(b"\n").split(b"\t", 1)
            messages.append((topic.decode(), payload))
    done = threading.Event()
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    def on_connect(client: paho.Client, *_: object) -> None:
        sock = client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.5)
    print(f"start={time.monotonic()!r}", flush=True)
    for topic, payload in messages:
        client.publish(topic, payload, qos=1, retain=True)
    done.wait(120)
    print(f"acked={time.monotonic()!r}", flush=True)
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
