#!/usr/bin/env python3
"""Listener for roslan's examples.

Subscribes to std_msgs/String on the topic `microk8s_chatter` and logs every message it receives as
`TAG:HOSTNAME:PID: "<text>"`, its own identity first, then what the talker sent, e.g.
`l1:l1:1: "t2:t2:1: 17"`.

Usage: python3 subscriber.py TAG     e.g. `python3 /scripts/subscriber.py l1`

Needs nothing but the ROS 2 environment of the `ros` images (rclpy, std_msgs).
"""

import os
import re
import socket
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import String

TOPIC = "microk8s_chatter"
QUEUE_DEPTH = 10


def node_name(role, tag):
    """A valid, distinct ROS node name per tag."""
    return role + "_" + re.sub(r"[^A-Za-z0-9_]", "_", tag)


class Listener(Node):
    def __init__(self, tag):
        super().__init__(node_name("listener", tag))
        self.origin = f"{tag}:{socket.gethostname()}:{os.getpid()}"
        self.subscription = self.create_subscription(String, TOPIC, self.received, QUEUE_DEPTH)

    def received(self, message):
        self.get_logger().info(f'{self.origin}: "{message.data}"')


def main(argv):
    if len(argv) != 2 or not argv[1]:
        print(f"usage: {argv[0]} TAG", file=sys.stderr)
        return 2
    # rclpy turns SIGINT and SIGTERM (what the kubelet sends) into a shutdown that ends spin().
    rclpy.init()
    listener = Listener(argv[1])
    try:
        rclpy.spin(listener)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        listener.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
