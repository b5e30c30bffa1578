//! The point of roslan: unpinned multicast from a dual-homed pod leaves through the LAN interface and
//! reaches sibling pods and LAN hosts, where the reference plugins' usual configuration does not.

use roslan_tests::Lan;
use roslan_tests::plugin::Reference;
use roslan_tests::root_test;
use roslan_tests::traffic::exchange;

const GROUP: &str = "239.255.0.1";
const SPDP_PORT: u16 = 7400;

#[root_test]
fn unpinned_multicast_reaches_pods_and_lan_hosts() {
    let lan = Lan::new();
    let conf = lan.config("0.3.1");
    let a = lan.dual_homed_pod();
    let b = lan.dual_homed_pod();
    lan.add(&a, "net1", &conf);
    lan.add(&b, "net1", &conf);

    let got = exchange(&a.ns, &[&b.ns, &lan.host], GROUP, SPDP_PORT, 5);
    assert_eq!(got, vec![5, 5], "pod -> sibling pod and pod -> LAN host");
    let got = exchange(&lan.host, &[&a.ns, &b.ns], GROUP, SPDP_PORT, 5);
    assert_eq!(got, vec![5, 5], "LAN host -> both pods");
    let got = exchange(&b.ns, &[&a.ns], GROUP, SPDP_PORT, 5);
    assert_eq!(got, vec![5], "and back");
}

#[root_test]
fn reference_plugins_send_multicast_to_the_gateway() {
    // Negative control: the reference macvlan + host-local with the usual `routes: [224.0.0.0/4]`
    // workaround attach the gateway to the multicast route; frames go to the gateway's MAC only. The
    // same with the upstream release and Debian's build.
    let lan = Lan::new();
    let conf = lan.reference_config("0.3.1");
    for reference in Reference::all() {
        let a = lan.dual_homed_pod();
        let b = lan.dual_homed_pod();
        for pod in [&a, &b] {
            lan.reference_add(&reference, pod, "net1", &conf);
        }
        let route =
            a.ns.routes("-4")
                .into_iter()
                .find(|r| r["dst"] == "224.0.0.0/4")
                .expect("route");
        assert_eq!(
            route["gateway"],
            roslan_tests::lan::HOST_ADDR,
            "{} attaches the gateway",
            reference.name
        );
        let got = exchange(&a.ns, &[&b.ns, &lan.host], GROUP, SPDP_PORT, 5);
        assert_eq!(got[0], 0, "{}: the sibling pod hears nothing", reference.name);
        assert_eq!(got[1], 5, "{}: only the gateway's owner does", reference.name);
    }
}
