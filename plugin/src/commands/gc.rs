//! GC (CNI 1.1.0): release what no listed attachment uses, such as the reservations of pods whose DEL
//! never came (node crash, runtime state lost). The runtime guarantees no ADD or DEL runs meanwhile,
//! and the namespaces of stale attachments are gone, so only the store needs cleaning.

use serde_json::Value;

use crate::cni::Request;
use crate::config::NetConf;
use crate::error::Error;
use crate::ipam;

/// Runs GC: all of it is the IPAM's ([`ipam::gc`]), which `roslan-ipam` runs the same way.
pub fn gc(request: &Request, conf: &NetConf, raw: &Value) -> Result<(), Error> {
    ipam::gc(request, conf, raw)
}
