#!/usr/bin/env bash
# make demo: roslan's main job on a throwaway LAN built from network namespaces.
#
# Two "pods" that look like Kubernetes pods on MicroK8s (eth0 holds the default route into a cluster
# network that carries no multicast) get a second interface on the LAN, once with roslan and once with
# the reference macvlan + host-local plugins and the usual multicast route workaround. A sender that
# does not pin an interface (as DDS stacks often do) then multicasts to 239.255.0.1:7400, DDS' SPDP
# discovery address. Then real ROS 2 nodes (rclpy on Fast DDS, ROS 2's default) run the examples' talker
# and listener in those pods. Everything is removed on exit, also on Ctrl-C.
set -euo pipefail

BIN=${1:-target/release}
BIN=$(cd "$BIN" && pwd)
ROSLAN=$BIN/roslan
MCAST=$BIN/mcast
REF=/usr/lib/cni/macvlan
PYTHON=$(pwd)/${VENV:-.venv}/bin/python
SCRIPTS=$(pwd)/manifests/examples/scripts
P=rl-demo
WORK=$(mktemp -d /tmp/roslan-demo.XXXXXX)
for f in "$ROSLAN" "$MCAST" "$REF" "$PYTHON"; do [ -x "$f" ] || { echo "missing $f (run: make demo)"; exit 1; }; done

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '  $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; }

remove_namespaces() { for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns del "$ns"; done; }
cleanup() { remove_namespaces; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
remove_namespaces

bold "1. A LAN: the node's master interface lan0, a plain LAN host, and a cluster overlay without multicast"
ip netns add $P-node; ip netns add $P-lanhost; ip netns add $P-overlay
ip -n $P-node link add lan0 type veth peer name lan0p netns $P-lanhost
ip -n $P-node addr add 192.168.50.2/24 dev lan0; ip -n $P-node link set lan0 up; ip -n $P-node link set lo up
ip -n $P-node route add default via 192.168.50.1
ip -n $P-lanhost addr add 192.168.50.1/24 dev lan0p; ip -n $P-lanhost link set lan0p up
ip -n $P-lanhost route add 224.0.0.0/4 dev lan0p
echo "  node: lan0 192.168.50.2/24    LAN host: 192.168.50.1/24"

pod() { # name index: a dual-homed pod with eth0 holding the default route, as Calico sets it up
  ip netns add $P-$1; ip -n $P-$1 link set lo up
  ip -n $P-$1 link add eth0 type veth peer name ov$2 netns $P-overlay
  ip -n $P-$1 addr add 10.1.$2.2/24 dev eth0; ip -n $P-$1 link set eth0 up
  ip -n $P-$1 route add default via 10.1.$2.1
  ip -n $P-overlay addr add 10.1.$2.1/24 dev ov$2; ip -n $P-overlay link set ov$2 up
}

conf() { # type
  cat <<EOF
{"cniVersion": "0.3.1", "name": "ros-lan", "type": "$1", "master": "lan0", "mode": "bridge",
 "ipam": {"type": "host-local", "dataDir": "$WORK/ipam-$1",
          "ranges": [[{"subnet": "192.168.50.0/24", "rangeStart": "192.168.50.160", "rangeEnd": "192.168.50.180", "gateway": "192.168.50.1"}]],
          "routes": [{"dst": "224.0.0.0/4"}]}}
EOF
}

attach() { # plugin-binary pod
  CNI_COMMAND=ADD CNI_CONTAINERID=demo-$2 CNI_NETNS=/run/netns/$P-$2 CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni \
    ip netns exec $P-node "$1" < "$WORK/conf.json" > "$WORK/$2.json" 2> "$WORK/$2.err"
}

exchange() { # from to...: unpinned multicast, prints what each receiver got
  local from=$1; shift
  local pids=()
  for to in "$@"; do
    ip netns exec $P-$to "$MCAST" recv 239.255.0.1 7400 5 1500 > "$WORK/rx-$to" & pids+=($!)
  done
  sleep 0.3
  ip netns exec $P-$from "$MCAST" send 239.255.0.1 7400 5 > /dev/null 2>&1 || true
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  for to in "$@"; do printf '    %-9s heard %s\n' "$to" "$(tail -1 "$WORK/rx-$to" | sed 's/received //')"; done
}

bold "2. roslan: attach two dual-homed pods (type \"roslan\")"
conf roslan > "$WORK/conf.json"
pod ros-a 1; pod ros-b 2
attach "$ROSLAN" ros-a; attach "$ROSLAN" ros-b
echo "  ADD result for ros-a:"; sed 's/^/    /' "$WORK/ros-a.json"
run ip -n $P-ros-a route
bold "   unpinned multicast from ros-a to 239.255.0.1:7400"
exchange ros-a ros-b lanhost

bold "3. reference macvlan + host-local with the usual \"routes\": [{\"dst\": \"224.0.0.0/4\"}] workaround"
conf macvlan > "$WORK/conf.json"
pod ref-a 3; pod ref-b 4
attach "$REF" ref-a; attach "$REF" ref-b
run ip -n $P-ref-a route
echo "  (the reference plugins attach the range's gateway to the multicast route)"
bold "   unpinned multicast from ref-a to 239.255.0.1:7400"
exchange ref-a ref-b lanhost

# A ROS 2 node in a "container" of pod $1: its own mount and PID namespace (the node is PID 1 under
# `timeout`, which stops it after $4 s), the pod's network namespace and host name, a /dev/shm of its own
# so Fast DDS' shared memory cannot carry what the network does not, and no DDS configuration at all.
ros_node() { # pod script tag seconds
  ip netns exec $P-$1 unshare --mount --uts --pid --fork --kill-child --mount-proc --propagation private \
    env -i PATH=/usr/bin:/bin ROS_HOME="$WORK/ros" sh -c \
    'mount -t tmpfs shm /dev/shm && hostname "$0" && exec timeout -k 2 "$1" "$2" -u "$3" "$4"' \
    "$1" "$4" "$PYTHON" "$SCRIPTS/$2" "$3" 2>&1
}

chat() { # listener-pod talker-pod: the listener's log lines, at most 4
  ros_node "$1" subscriber.py l1 6 > "$WORK/chat-$1" & local listener=$!
  ros_node "$2" publisher.py t1 6 > /dev/null & local talker=$!
  wait $listener $talker || true
  if grep -q 'l1:' "$WORK/chat-$1"; then grep 'l1:' "$WORK/chat-$1" | head -4 | sed 's/^/    /'
  else echo "    (nothing heard in 6 s)"; fi
}

bold "4. Real ROS 2 nodes (rclpy, Fast DDS): talker t1 in one pod, listener l1 in the other"
echo "  roslan pods, listener in ros-b, talker in ros-a:"
chat ros-b ros-a
echo "  reference pods with the workaround, listener in ref-b, talker in ref-a:"
chat ref-b ref-a

bold "Summary"
echo "  roslan:    the sibling pod and the LAN host both hear the pod: DDS discovery works, ROS 2 nodes talk."
echo "  reference: frames go to the gateway's MAC only; the sibling pod hears nothing, ROS 2 nodes included."
echo "  Cleaning up namespaces and files."
