#!/usr/bin/env python3
"""Talker for roslan's examples.

Publishes std_msgs/String on the topic `microk8s_chatter` once a second. Each message reads
`TAG:HOSTNAME:PID: COUNT`, so a listener shows which talker, in which pod and process, sent it (HOSTNAME is
the pod's name). Two talkers in one pod share the host name and, each being PID 1 of its own container,
usually the PID as well: only the tag tells them apart.

Usage: python3 publisher.py TAG      e.g. `python3 /scripts/publisher.py t1`

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
PERIOD_S = 1.0
QUEUE_DEPTH = 10


def node_name(role, tag):
    """A valid, distinct ROS node name per tag, so that several talkers do not share a name."""
    return role + "_" + re.sub(r"[^A-Za-z0-9_]", "_", tag)


class Talker(Node):
    def __init__(self, tag):
        super().__init__(node_name("talker", tag))
        self.origin = f"{tag}:{socket.gethostname()}:{os.getpid()}"
        self.count = 0
        self.publisher = self.create_publisher(String, TOPIC, QUEUE_DEPTH)
        self.timer = self.create_timer(PERIOD_S, self.publish_next)

    def publish_next(self):
        message = String()
        message.data = f"{self.origin}: {self.count}"
        self.publisher.publish(message)
        self.get_logger().info(f"publishing {message.data}")
        self.count += 1


def main(argv):
    if len(argv) != 2 or not argv[1]:
        print(f"usage: {argv[0]} TAG", file=sys.stderr)
        return 2
    # rclpy turns SIGINT and SIGTERM (what the kubelet sends) into a shutdown that ends spin().
    rclpy.init()
    talker = Talker(argv[1])
    try:
        rclpy.spin(talker)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        talker.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
