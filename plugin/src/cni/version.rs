//! CNI specification versions and what each one allows.

use std::fmt;

/// A CNI specification version roslan knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.1.0: `ip4`/`ip6` results. Also what a config without `cniVersion` means.
    V0_1_0,
    /// 0.2.0: adds VERSION.
    V0_2_0,
    /// 0.3.0: interfaces, `ips[]` with `version`, chaining.
    V0_3_0,
    /// 0.3.1: 0.3.0 with a typo fixed.
    V0_3_1,
    /// 0.4.0: CHECK, `prevResult` on DEL.
    V0_4_0,
    /// 1.0.0: `ips[].version` removed.
    V1_0_0,
    /// 1.1.0: STATUS, GC, `cniVersions`, route scope and interface MTU in results.
    V1_1_0,
}

/// Every version roslan implements completely, oldest first; VERSION reports exactly this list.
pub const SUPPORTED: &[Version] = &[
    Version::V0_1_0,
    Version::V0_2_0,
    Version::V0_3_0,
    Version::V0_3_1,
    Version::V0_4_0,
    Version::V1_0_0,
    Version::V1_1_0,
];

impl Version {
    /// The newest version roslan implements.
    pub fn latest() -> Version {
        SUPPORTED[SUPPORTED.len() - 1]
    }

    /// Parses a version string; `None` for anything roslan does not implement.
    pub fn parse(text: &str) -> Option<Version> {
        let version = match text {
            "0.1.0" => Version::V0_1_0,
            "0.2.0" => Version::V0_2_0,
            "0.3.0" => Version::V0_3_0,
            "0.3.1" => Version::V0_3_1,
            "0.4.0" => Version::V0_4_0,
            "1.0.0" => Version::V1_0_0,
            "1.1.0" => Version::V1_1_0,
            _ => return None,
        };
        SUPPORTED.contains(&version).then_some(version)
    }

    /// The version string as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_1_0 => "0.1.0",
            Version::V0_2_0 => "0.2.0",
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Results use `ip4`/`ip6` instead of `interfaces`/`ips` (0.1.0 and 0.2.0).
    pub fn legacy_result(self) -> bool {
        self < Version::V0_3_0
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// `ips[].version` is present before 1.0.0.
    pub fn ips_carry_version(self) -> bool {
        self < Version::V1_0_0
    }

    /// STATUS, GC and the 1.1.0 result fields.
    pub fn has_status_and_gc(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The supported versions as strings, for VERSION output and error details.
pub fn supported_strings() -> Vec<&'static str> {
    SUPPORTED.iter().map(|v| v.as_str()).collect()
}
