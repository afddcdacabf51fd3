//! A real `redis-server` (the Debian package `scripts/setup.sh` installs) on a free loopback
//! port, for the shared-routing tests and benchmarks: nothing persisted, stopped when
//! dropped, and restartable on the same port to play an outage.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// TLS only: the directory with `ca.crt`, `server.crt` and `server.key`.
    tls: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> std::io::Result<Self> {
        Self::launch(None)
    }

    /// Starts a TLS-only server whose certificate (for `127.0.0.1`) is signed by a CA made
    /// for it with `openssl`; [`RedisServer::ca_file`] is that CA.
    pub fn start_tls() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("voxhook-redis-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        make_certificates(&dir)?;
        Self::launch(Some(dir))
    }

    fn launch(tls: Option<PathBuf>) -> std::io::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut s = Self {
            port,
            child: None,
            tls,
        };
        s.resume()?;
        Ok(s)
    }

    /// `redis://127.0.0.1:{port}` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate of a TLS server.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|d| d.join("ca.crt"))
    }

    /// Kills the server (its data is gone: as after a crash without persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn resume(&mut self) -> std::io::Result<()> {
        self.stop();
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(dir) => cmd
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.crt")),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("redis-server not runnable ({e}); scripts/setup.sh installs it"),
                )
            })?;
        self.child = Some(child);
        for _ in 0..500 {
            if self.cli(&["PING"]) == "PONG" {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other(
            "redis-server did not answer within 10 s",
        ))
    }

    /// Runs one command through `redis-cli` and returns its output (tests' inspection).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(ca) = self.ca_file() {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd.args(args).stderr(Stdio::null()).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.tls {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A CA and a server certificate for `127.0.0.1` signed by it, in `dir`.
fn make_certificates(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=voxhook test CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "san.ext",
        ],
    ];
    for args in steps {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        if !ok {
            return Err(std::io::Error::other(format!("openssl {} failed", args[0])));
        }
    }
    Ok(())
}
