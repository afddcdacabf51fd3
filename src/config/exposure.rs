//! Whether a config file that anyone on the host may read holds a secret. Secrets belong in
//! systemd credentials (`LoadCredential=`), the environment, or a file only the service
//! user can read; `voxhook validate` and startup warn otherwise, naming the keys (never
//! their values).

use std::path::Path;

/// Key names that hold secrets in voxhook's config (client secrets, private and API keys,
/// tokens, passwords); a `url` holds one when it carries credentials (`redis://:pw@host`).
fn is_secret(key: &str, value: &str) -> bool {
    let named = ["secret", "token", "password", "_key"]
        .iter()
        .any(|end| key.ends_with(end));
    named || (key == "url" && value.contains("://") && value.contains('@'))
}

/// The warning for `path` when others may read it and it sets a secret key to a non-empty
/// value; `None` otherwise (or when it cannot be read: loading reports that).
pub fn world_readable_secrets(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o004 == 0 {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let keys: Vec<String> = secrets(&text).into_iter().map(|(k, _)| k).collect();
    if keys.is_empty() {
        return None;
    }
    Some(format!(
        "{} is readable by every user (mode {:03o}) and holds {}; move them to systemd \
         credentials or the environment, or chmod 600 it",
        path.display(),
        mode & 0o777,
        keys.join(", ")
    ))
}

/// The `section.key`s of `toml` that set a secret to a non-empty value, with the value as
/// written (unquoted; the first line of a multi-line string). A line-level read, so that a
/// file that fails to parse is still checked. The tests use the values to look for leaks.
pub fn secrets(toml: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in toml.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[') {
            section = name
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.starts_with('#') || !is_secret(key, value) {
            continue;
        }
        let empty = matches!(value, "\"\"" | "''") || value.starts_with('#') || value.is_empty();
        if !empty {
            let name = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            let unquoted = value.trim_matches(|c| c == '"' || c == '\'');
            out.push((name, unquoted.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_named_and_their_values_never() {
        let toml = r#"
[server]
listen = "0.0.0.0:8080"
[bot]
client_id = "cs-1"
client_secret = "hunter2"
# bearer_token = "commented out"
jwt_user_identity = true
[stt]
api_key = ""
[routing]
url = "redis://:pw@10.0.0.5:6379"
[[telephony]]
private_key = """-----BEGIN"""
"#;
        let found = secrets(toml);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["bot.client_secret", "routing.url", "telephony.private_key"]
        );
        assert_eq!(found[0].1, "hunter2");
        assert_eq!(found[2].1, "-----BEGIN");
        assert!(secrets("[routing]\nurl = \"redis://10.0.0.5\"\n").is_empty());
    }

    #[test]
    fn only_a_file_others_can_read_is_flagged() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::temp_dir().join(format!("voxhook-exp-{}.toml", std::process::id()));
        std::fs::write(&path, "[bot]\nclient_secret = \"hunter2\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = world_readable_secrets(&path).expect("a warning");
        assert!(
            w.contains("mode 644") && w.contains("bot.client_secret"),
            "{w}"
        );
        assert!(!w.contains("hunter2"), "{w}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(world_readable_secrets(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, "[bot]\nclient_id = \"x\"\n").unwrap();
        assert_eq!(world_readable_secrets(&path), None);
        std::fs::remove_file(&path).unwrap();
    }
}
