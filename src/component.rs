//! How an implementation of a capability (telephony provider, STT or TTS backend, bot
//! platform, call directory) plugs in: it owns a raw serde struct and a pure validation into
//! its settings ([`Component`]), and its capability lists it with one line of [`registry!`].
//! Neither the config loader nor the server or call core names an implementation.
//!
//! Validation collects every [`ConfigError`] with its dotted key, touches no network and no
//! file, and a type error in one section never hides the problems of another.

use std::fmt::Debug;

/// One problem in the configuration, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted key, e.g. `bot.webhook_url`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Problems found so far.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    /// Records a problem at `key`.
    pub fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records `message` at `key` unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.push(key, message);
        }
    }
}

/// Where a section is being validated, and the facts of other sections it may check against.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// The name the section was selected by (`provider`/`platform`/`backend` value, or the
    /// provider's table name).
    pub name: &'static str,
    /// Dotted path of the section, e.g. `stt` or `languages.es.stt`.
    pub path: &'a str,
    /// `server.public_url`, which providers that sign their requests need.
    pub public_url: Option<&'a str>,
}

impl Ctx<'_> {
    /// The dotted key of `field` in this section.
    pub fn key(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    /// The environment variable that sets `field` of this section (`VOXHOOK__STT__API_KEY`),
    /// for error messages about secrets best kept out of the file.
    pub fn env_var(&self, field: &str) -> String {
        format!(
            "VOXHOOK__{}",
            self.key(field).replace('.', "__").to_uppercase()
        )
    }
}

/// An implementation's configuration: what the operator writes and what it validates into.
pub trait Component: Sized + Debug + Clone + Send + Sync + 'static {
    /// The raw section (serde, `deny_unknown_fields`, a default for every key).
    type Raw: serde::de::DeserializeOwned;
    /// Checks and converts `raw`, pushing every problem (keys via [`Ctx::key`]).
    fn validate(raw: Self::Raw, ctx: &Ctx<'_>, errs: &mut Errors) -> Self;
}

/// Deserializes `value` as `C::Raw` and validates it; a type error is pushed at `ctx.path`.
pub fn parse<C: Component>(value: config::Value, ctx: &Ctx<'_>, errs: &mut Errors) -> Option<C> {
    match value.try_deserialize::<C::Raw>() {
        Ok(raw) => Some(C::validate(raw, ctx, errs)),
        Err(e) => {
            push_load_error(errs, ctx.path, e);
            None
        }
    }
}

/// Pushes a deserialization error at its full dotted key, without the file origin (the
/// operator knows which file) and without repeating the key in the message.
pub fn push_load_error(errs: &mut Errors, path: &str, e: config::ConfigError) {
    use config::ConfigError as E;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else if key.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match e {
        E::Type {
            unexpected,
            expected,
            key,
            ..
        } => errs.push(
            &join(key.as_deref().unwrap_or("")),
            format!("invalid type: {unexpected}, expected {expected}"),
        ),
        E::At { error, key, .. } => {
            push_load_error(errs, &join(key.as_deref().unwrap_or("")), *error)
        }
        E::NotFound(key) => errs.push(&join(&key), "missing"),
        other => errs.push(path, other.to_string()),
    }
}

/// An empty TOML table, for sections the operator left out (every key defaults).
pub fn empty_table() -> config::Value {
    config::Value::new(None, config::ValueKind::Table(Default::default()))
}

/// Declares a capability's closed list of implementations, one line each, as an enum of
/// their validated settings:
///
/// ```ignore
/// registry! {
///     /// Validated `[stt]`.
///     pub enum SttSettings: dyn SttBackend, tag "provider", default "whisper" {
///         Whisper(whisper::WhisperSettings) = "whisper",
///         Fake(fake::FakeSttSettings) = "fake",
///     }
/// }
/// ```
///
/// Each type implements [`Component`] and the capability's trait (`SttBackend`), which
/// [`get`](#method.get) hands out. `from_section` reads the tag (the default when absent,
/// so a partly written section keeps its other defaults) and validates the rest of the table
/// with the implementation it names. A line may accept several names (`= "a" | "b"`); the
/// implementation sees which in [`Ctx::name`].
#[macro_export]
macro_rules! registry {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident : dyn $Trait:path, tag $tag:literal, default $default:literal {
            $( $(#[$vmeta:meta])* $Variant:ident($Ty:ty) = $($name:literal)|+ ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis enum $Enum {
            $( $(#[$vmeta])* $Variant($Ty) ),+
        }

        impl $Enum {
            /// Every name the tag accepts, in registration order.
            pub const NAMES: &'static [&'static str] = &[$($($name),+),+];
            /// The tag key of this capability's sections.
            pub const TAG: &'static str = $tag;
            /// The implementation used when a section names none.
            pub const DEFAULT: &'static str = $default;

            /// The implementation behind the capability's trait.
            pub fn get(&self) -> &dyn $Trait {
                match self {
                    $( Self::$Variant(c) => c ),+
                }
            }

            /// Validates a section (`None`: absent) at `path`, selected by its tag.
            pub fn from_section(
                value: Option<$crate::component::Value>,
                path: &str,
                public_url: Option<&str>,
                errs: &mut $crate::component::Errors,
            ) -> Option<Self> {
                let (name, rest) =
                    $crate::component::split_tag(value, Self::TAG, Self::DEFAULT, path, errs)?;
                Self::named(&name, rest, path, public_url, errs)
            }

            /// Validates one section written as TOML (tests and tools).
            pub fn from_toml(
                path: &str,
                toml: &str,
            ) -> Result<Self, Vec<$crate::component::ConfigError>> {
                let mut errs = $crate::component::Errors::default();
                let value = $crate::component::toml_value(toml, path, &mut errs);
                let parsed = value.and_then(|v| Self::from_section(Some(v), path, None, &mut errs));
                match parsed {
                    Some(s) if errs.0.is_empty() => Ok(s),
                    _ => Err(errs.0),
                }
            }

            /// Validates `value` with the implementation registered as `name`.
            pub fn named(
                name: &str,
                value: $crate::component::Value,
                path: &str,
                public_url: Option<&str>,
                errs: &mut $crate::component::Errors,
            ) -> Option<Self> {
                $( $(
                    if name == $name {
                        let ctx = $crate::component::Ctx { name: $name, path, public_url };
                        return $crate::component::parse::<$Ty>(value, &ctx, errs)
                            .map(Self::$Variant);
                    }
                )+ )+
                errs.push(
                    &format!("{path}.{}", Self::TAG),
                    format!("`{name}` is not one of {:?}", Self::NAMES),
                );
                None
            }
        }
    };
}

pub use config::Value;

/// A TOML text as an untyped table (`None` after a syntax error, pushed at `path`).
pub fn toml_value(toml: &str, path: &str, errs: &mut Errors) -> Option<Value> {
    match config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()
    {
        Ok(c) => Some(c.cache),
        Err(e) => {
            push_load_error(errs, path, e);
            None
        }
    }
}

/// Splits a tagged section into its tag (or `default`) and the other keys.
pub fn split_tag(
    value: Option<Value>,
    tag: &str,
    default: &str,
    path: &str,
    errs: &mut Errors,
) -> Option<(String, Value)> {
    let Some(value) = value else {
        return Some((default.to_string(), empty_table()));
    };
    let mut table = match value.into_table() {
        Ok(t) => t,
        Err(e) => {
            push_load_error(errs, path, e);
            return None;
        }
    };
    let name = match table.remove(tag) {
        None => default.to_string(),
        Some(v) => match v.into_string() {
            Ok(s) => s,
            Err(e) => {
                push_load_error(errs, &format!("{path}.{tag}"), e);
                return None;
            }
        },
    };
    Some((name, Value::new(None, config::ValueKind::Table(table))))
}

/// `base` with every key of `over` put on top (one level: the keys of a backend section).
pub fn overlay(base: Option<&Value>, over: Value, path: &str, errs: &mut Errors) -> Option<Value> {
    let mut table = match base.cloned().map(Value::into_table).transpose() {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            push_load_error(errs, path, e);
            return None;
        }
    };
    match over.into_table() {
        Ok(o) => table.extend(o),
        Err(e) => {
            push_load_error(errs, path, e);
            return None;
        }
    }
    Some(Value::new(None, config::ValueKind::Table(table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct RawThing {
        size: u32,
        label: String,
    }

    impl Default for RawThing {
        fn default() -> Self {
            Self {
                size: 3,
                label: "x".into(),
            }
        }
    }

    #[derive(Debug, Clone)]
    struct Thing {
        name: &'static str,
        size: u32,
        label: String,
    }

    trait Describe {
        fn describe(&self) -> String;
    }

    impl Describe for Thing {
        fn describe(&self) -> String {
            format!("{} {} {}", self.name, self.size, self.label)
        }
    }

    impl Component for Thing {
        type Raw = RawThing;
        fn validate(raw: RawThing, ctx: &Ctx<'_>, errs: &mut Errors) -> Self {
            errs.check(raw.size > 0, &ctx.key("size"), "must be at least 1");
            Thing {
                name: ctx.name,
                size: raw.size,
                label: raw.label,
            }
        }
    }

    registry! {
        enum Things: dyn Describe, tag "kind", default "a" {
            One(Thing) = "a" | "b",
        }
    }

    fn value(toml: &str) -> Value {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .cache
    }

    #[test]
    fn a_partial_section_keeps_the_default_tag_and_other_defaults() {
        let mut errs = Errors::default();
        let t = Things::from_section(Some(value("label = \"y\"")), "thing", None, &mut errs);
        assert!(errs.0.is_empty(), "{errs:?}");
        assert_eq!(t.unwrap().get().describe(), "a 3 y");
        let t = Things::from_section(None, "thing", None, &mut errs).unwrap();
        assert_eq!(t.get().describe(), "a 3 x");
        let t = Things::from_section(Some(value("kind = \"b\"")), "thing", None, &mut errs);
        assert_eq!(t.unwrap().get().describe(), "b 3 x");
        let t = Things::from_toml("thing", "size = 9").unwrap();
        assert_eq!(t.get().describe(), "a 9 x");
        let errs = Things::from_toml("thing", "size = [").unwrap_err();
        assert_eq!(errs[0].key, "thing", "{errs:?}");
    }

    #[test]
    fn unknown_names_type_errors_and_checks_carry_their_keys() {
        let mut errs = Errors::default();
        assert!(Things::from_section(Some(value("kind = \"zz\"")), "t", None, &mut errs).is_none());
        assert!(
            Things::from_section(Some(value("size = \"big\"")), "u", None, &mut errs).is_none()
        );
        assert!(Things::from_section(Some(value("size = 0")), "v", None, &mut errs).is_some());
        assert!(Things::from_section(Some(value("sise = 1")), "w", None, &mut errs).is_none());
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["t.kind", "u.size", "v.size", "w"], "{errs:?}");
        assert!(errs.0[0].message.contains("[\"a\", \"b\"]"), "{errs:?}");
        assert!(errs.0[3].message.contains("sise"), "{errs:?}");
    }

    #[test]
    fn overlay_puts_keys_on_top_of_the_base_section() {
        let mut errs = Errors::default();
        let base = value("kind = \"a\"\nsize = 5\nlabel = \"base\"");
        let merged = overlay(Some(&base), value("label = \"es\""), "l", &mut errs).unwrap();
        let t = Things::from_section(Some(merged), "l", None, &mut errs).unwrap();
        assert_eq!(t.get().describe(), "a 5 es");
    }
}
