//! Ethernet MAC addresses: parsing, printing, and the checks a macvlan needs.

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Group (multicast/broadcast) addresses cannot be a link's own address; the kernel refuses them.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }

    /// The raw bytes, as netlink wants them.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// The pod's stable MAC on a network: the same for every incarnation of a pod name, so a restarted
    /// pod keeps its MAC and the LAN's ARP caches, switch tables and access points need no update.
    /// Locally administered (bit 1 set) and unicast (bit 0 clear), as a made-up MAC must be.
    pub fn stable(network: &str, namespace: &str, pod: &str) -> Mac {
        let hash = roslan_ipam_core::fnv::fnv64_parts(&[
            b"roslan-mac",
            network.as_bytes(),
            namespace.as_bytes(),
            pod.as_bytes(),
        ]);
        let b = hash.to_be_bytes();
        Mac([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }

    /// From netlink's IFLA_ADDRESS bytes, if they are an Ethernet address.
    pub fn from_slice(bytes: &[u8]) -> Option<Mac> {
        <[u8; 6]>::try_from(bytes).ok().map(Mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case (as Go's `net.ParseMAC` does for
/// 48-bit addresses).
impl FromStr for Mac {
    type Err = ();

    fn from_str(text: &str) -> Result<Mac, ()> {
        let sep = if text.contains('-') { '-' } else { ':' };
        let mut bytes = [0u8; 6];
        let mut parts = text.split(sep);
        for byte in &mut bytes {
            let part = parts.next().ok_or(())?;
            if part.len() != 2 {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let mac: Mac = "02-AB-cd-00-11-22".parse().unwrap();
        assert_eq!(mac.to_string(), "02:ab:cd:00:11:22");
        assert!(mac.is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<Mac>().unwrap().is_unicast());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
