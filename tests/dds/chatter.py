#!/usr/bin/env python3
"""A ROS 2 style talker/listener on plain Cyclone DDS (PyPI `cyclonedds`), for roslan's DDS tests.

It speaks what `ros2 run demo_nodes_cpp talker` / `listener` put on the wire: topic
`rt/microk8s_chatter` (ROS topic `/microk8s_chatter`), type `std_msgs::msg::dds_::String_` (a struct
with one string field `data`), reliable, volatile, keep-last 10 (the ROS 2 default QoS profile),
domain 0 (`ROS_DOMAIN_ID` unset).

Zero DDS configuration: nothing here chooses an interface, an address or a peer; whatever the
environment gives (`CYCLONEDDS_URI`) is used as is. The tests set none, except for IPv6, where
Cyclone needs `<Transport>udp6</Transport>` (see tests/tests/dds.rs).

    chatter.py talker   [--count N] [--timeout S] [--domain D] [--tag TAG]
    chatter.py listener [--count N] [--timeout S] [--domain D] [--tag TAG]

talker:   waits (at most --timeout s) for a matched subscription, publishes N messages at 10 Hz,
          waits for them to be acknowledged; exit 0, or 1 if nobody matched / acked.
listener: prints "listener: ready" once its reader exists, then each message; exits 0 when it has
          heard N messages, 1 at --timeout.
With --tag, the talker's messages read `TAG:HOSTNAME:PID: COUNT`, as the seed's publisher.py sends them
(tests/src/ros2.rs tells talkers apart by it); without it, `Hello World: COUNT`.
Every line is flushed at once and prefixed with the role, so a harness can timestamp it.
"""

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

TOPIC = "rt/microk8s_chatter"


@dataclass
class String_(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str


def say(role, text):
    print(f"{role}: {text}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["talker", "listener"])
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--domain", type=int, default=0)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    qos = Qos(
        Policy.Reliability.Reliable(duration(seconds=1)),
        Policy.Durability.Volatile,
        Policy.History.KeepLast(10),
    )
    start = time.monotonic()
    participant = DomainParticipant(args.domain)
    topic = Topic(participant, TOPIC, String_, qos=qos)

    def ms():
        return 1000 * (time.monotonic() - start)

    if args.role == "talker":
        writer = DataWriter(participant, topic, qos=qos)
        say("talker", "ready")
        while not writer.get_matched_subscriptions():
            if ms() > 1000 * args.timeout:
                say("talker", f"no subscriber matched within {args.timeout:g} s")
                return 1
            time.sleep(0.005)
        say("talker", f"matched subscriber after {ms():.0f} ms")
        for i in range(args.count):
            text = f"{args.tag}:{socket.gethostname()}:{os.getpid()}: {i}" if args.tag else f"Hello World: {i}"
            writer.write(String_(data=text))
            say("talker", f"Publishing: '{text}'")
            time.sleep(0.1)
        if not writer.wait_for_acks(duration(seconds=max(args.timeout - ms() / 1000, 1))):
            say("talker", "not every message was acknowledged")
            return 1
        say("talker", f"sent {args.count}, all acknowledged")
        return 0

    reader = DataReader(participant, topic, qos=qos)
    say("listener", "ready")
    got = 0
    matched = False
    while got < args.count and ms() < 1000 * args.timeout:
        samples = reader.take(N=10)
        # A sample implies a match; checked after take so the line always precedes the first message.
        if not matched and (samples or reader.get_matched_publications()):
            matched = True
            say("listener", f"matched publisher after {ms():.0f} ms")
        for sample in samples:
            if not isinstance(sample, String_):
                continue  # an invalid sample (a writer's unregistration), not a message
            got += 1
            say("listener", f"I heard: '{sample.data}'")
        time.sleep(0.005)
    say("listener", f"received {got}/{args.count}")
    return 0 if got == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
