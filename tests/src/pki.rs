//! A throwaway certificate authority for test clusters, made with Debian's `openssl`: the CA, serving
//! certificates with the names clients dial, client certificates whose subject is the Kubernetes user
//! (CN) and groups (O), and a service-account signing key. P-256 keys: a certificate takes a few
//! milliseconds, and every Kubernetes component accepts them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A key and its certificate, as PEM files.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A CA in a directory the caller owns (and removes).
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    ca: CertPair,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run openssl ({err}): apt-get install openssl"));
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

impl Pki {
    /// Creates the CA (valid for two days) in `dir`, which must exist.
    pub fn new(dir: &Path) -> Pki {
        let ca = CertPair {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        new_key(&ca.key);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            path_str(&ca.key),
            "-out",
            path_str(&ca.cert),
            "-days",
            "2",
            "-subj",
            "/CN=roslan-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    /// The CA's certificate (clients' `certificate-authority`, the API server's `--client-ca-file`).
    pub fn ca(&self) -> &CertPair {
        &self.ca
    }

    /// A serving certificate for `name` valid for the DNS names and IP addresses in `sans`
    /// (`"DNS:localhost"`, `"IP:127.0.0.1"`).
    pub fn server(&self, name: &str, sans: &[String]) -> CertPair {
        let ext = format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
            sans.join(",")
        );
        self.issue(name, &format!("/CN={name}"), &ext)
    }

    /// A client certificate for Kubernetes user `user` in `groups` (kube-apiserver maps CN to the user
    /// and each O to a group). `file` names the files.
    pub fn client(&self, file: &str, user: &str, groups: &[&str]) -> CertPair {
        let subject: String = groups
            .iter()
            .map(|g| format!("/O={g}"))
            .chain([format!("/CN={user}")])
            .collect();
        self.issue(
            file,
            &subject,
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        )
    }

    /// A key pair that signs and verifies service-account tokens (`sa.key`, `sa.pub`).
    pub fn service_account_keys(&self) -> CertPair {
        let key = self.dir.join("sa.key");
        let public = self.dir.join("sa.pub");
        new_key(&key);
        openssl(&["pkey", "-in", path_str(&key), "-pubout", "-out", path_str(&public)]);
        CertPair { cert: public, key }
    }

    fn issue(&self, file: &str, subject: &str, extensions: &str) -> CertPair {
        let pair = CertPair {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        let csr = self.dir.join(format!("{file}.csr"));
        let ext = self.dir.join(format!("{file}.ext"));
        std::fs::write(&ext, extensions).expect("write extensions");
        new_key(&pair.key);
        openssl(&[
            "req",
            "-new",
            "-key",
            path_str(&pair.key),
            "-subj",
            subject,
            "-out",
            path_str(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&self.ca.cert),
            "-CAkey",
            path_str(&self.ca.key),
            "-set_serial",
            &next_serial().to_string(),
            "-days",
            "2",
            "-extfile",
            path_str(&ext),
            "-out",
            path_str(&pair.cert),
        ]);
        pair
    }
}

/// A serial number no other certificate of this process has (openssl's serial file would race between
/// threads issuing at once).
fn next_serial() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos >> 1) + COUNT.fetch_add(1, Ordering::Relaxed)
}

fn new_key(path: &Path) {
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-out",
        path_str(path),
    ]);
}
