//! `setPushConfig(callPushConfig, hungupPushConfig)`: CallLib's `IPushConfig` (5.1.2 title and
//! content, 5.1.2 / 5.1.3 Huawei and vivo categories, 5.2.4 per OS and vendor channel) read into
//! the engine's [`PushTexts`], so all of it reaches the wire and the app's push webhook.
//!
//! Checked like the installer checks its options (spec A.3): every wrong type is listed, one
//! per line, and `setPushConfig` throws `[RCCallClient setPushConfig] …` instead of dropping
//! the config silently. Keys CallLib does not know are kept (as JSON) for the app's backend.

use js_sys::{Object, JSON};
use rtc_core::engine::PushTexts;
use rtc_core::proto::{AndroidPushConfig, HarmonyOsPushConfig, IosPushConfig, PushOptions};
use wasm_bindgen::{JsCast, JsValue};

use crate::js;
use rtc_core::text::int;

/// Largest config accepted, as JSON: it rides along with every invite (or hangup), whose frame
/// the server caps (64 KiB by default); RongCloud's vendor channels take far less.
pub const MAX_CONFIG_BYTES: usize = 8 * 1024;

const IOS_KEYS: [&str; 5] = ["threadId", "apnsCollapseId", "category", "richMediaUri", "interruptionLevel"];
const ANDROID_KEYS: [&str; 12] = [
    "notificationId",
    "channelIdMi",
    "miLargeIconUrl",
    "channelIdHW",
    "categoryHW",
    "importanceHW",
    "imageUrlHW",
    "channelIdOPPO",
    "typeVivo",
    "categoryVivo",
    "importanceHonor",
    "imageUrlHonor",
];
const HARMONY_KEYS: [&str; 2] = ["imageUrl", "category"];
const TOP_KEYS: [&str; 9] = [
    "pushTitle",
    "pushContent",
    "pushData",
    "iOSConfig",
    "androidConfig",
    "harmonyOSConfig",
    "disablePushTitle",
    "forceShowDetailContent",
    "templateId",
];

/// Both configs of `setPushConfig`, or every problem found (one message per line).
pub fn parse_pair(call: &JsValue, hangup: &JsValue) -> Result<(PushTexts, PushTexts), String> {
    let mut problems = Vec::new();
    let call = parse(call, "callPushConfig", &mut problems);
    let hangup = parse(hangup, "hungupPushConfig", &mut problems);
    if problems.is_empty() {
        Ok((call, hangup))
    } else {
        Err(["[RCCallClient setPushConfig] ", &rtc_core::text::join(&problems, "\n")].concat())
    }
}

/// One `IPushConfig`; `undefined`/`null` is "none" (CallLib's default pushes).
fn parse(v: &JsValue, name: &str, problems: &mut Vec<String>) -> PushTexts {
    if !js::is_present(v) {
        return PushTexts::default();
    }
    if !is_plain_object(v) {
        problems.push([name, " must be an object"].concat());
        return PushTexts::default();
    }
    let mut r = Reader { obj: v, path: name, problems };
    let title = r.string("pushTitle");
    let content = r.string("pushContent");
    let mut o = PushOptions {
        push_data: r.string("pushData"),
        disable_push_title: r.boolean("disablePushTitle"),
        force_show_detail_content: r.boolean("forceShowDetailContent"),
        template_id: r.string("templateId"),
        extra_json: r.extra(&TOP_KEYS),
        ..Default::default()
    };
    if let Some(ios) = r.object("iOSConfig") {
        let path = [name, ".iOSConfig"].concat();
        let mut r = Reader { obj: &ios, path: &path, problems: &mut *r.problems };
        o.ios_config = Some(IosPushConfig {
            thread_id: r.string("threadId"),
            apns_collapse_id: r.string("apnsCollapseId"),
            category: r.string("category"),
            rich_media_uri: r.string("richMediaUri"),
            interruption_level: r.one_of("interruptionLevel", &["passive", "active", "time-sensitive", "critical"]),
            extra_json: r.extra(&IOS_KEYS),
        });
    }
    if let Some(android) = r.object("androidConfig") {
        let path = [name, ".androidConfig"].concat();
        let mut r = Reader { obj: &android, path: &path, problems: &mut *r.problems };
        let google = r.object("googleConfig").map(|g| r.json(&g, "googleConfig"));
        o.android_config = Some(AndroidPushConfig {
            notification_id: r.string("notificationId"),
            channel_id_mi: r.string("channelIdMi"),
            mi_large_icon_url: r.string("miLargeIconUrl"),
            channel_id_hw: r.string("channelIdHW"),
            category_hw: r.string("categoryHW"),
            importance_hw: r.one_of("importanceHW", &["NORMAL", "LOW"]),
            image_url_hw: r.string("imageUrlHW"),
            channel_id_oppo: r.string("channelIdOPPO"),
            type_vivo: r.one_of("typeVivo", &["0", "1"]),
            category_vivo: r.string("categoryVivo"),
            google_config_json: google,
            importance_honor: r.one_of("importanceHonor", &["NORMAL", "LOW"]),
            image_url_honor: r.string("imageUrlHonor"),
            extra_json: r.extra(&[&ANDROID_KEYS[..], &["googleConfig"]].concat()),
        });
    }
    if let Some(harmony) = r.object("harmonyOSConfig") {
        let path = [name, ".harmonyOSConfig"].concat();
        let mut r = Reader { obj: &harmony, path: &path, problems: &mut *r.problems };
        o.harmony_os_config = Some(HarmonyOsPushConfig {
            image_url: r.string("imageUrl"),
            category: r.string("category"),
            extra_json: r.extra(&HARMONY_KEYS),
        });
    }
    let size = JSON::stringify(v).ok().and_then(|s| s.as_string()).map_or(0, |s| s.len());
    if size > MAX_CONFIG_BYTES {
        let (size, max) = (int(size as i64), int(MAX_CONFIG_BYTES as i64));
        problems.push([name, " is too large (", &size, " bytes as JSON; at most ", &max, ")"].concat());
    }
    let options = (o != PushOptions::default()).then(|| Box::new(o));
    PushTexts { title, content, options }
}

fn is_plain_object(v: &JsValue) -> bool {
    v.is_object() && !js_sys::Array::is_array(v)
}

/// Reads typed keys of one object, noting wrong types under `path`.
struct Reader<'a> {
    obj: &'a JsValue,
    path: &'a str,
    problems: &'a mut Vec<String>,
}

impl Reader<'_> {
    /// Notes `{path}.{key}{what}`.
    fn problem(&mut self, key: &str, what: &str) {
        self.problems.push([self.path, ".", key, what].concat());
    }

    /// The value of a present key (`undefined` and `null` are absent).
    fn present(&self, key: &str) -> Option<JsValue> {
        Some(js::get(self.obj, key)).filter(js::is_present)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        let v = self.present(key)?;
        let s = v.as_string();
        if s.is_none() {
            self.problem(key, " must be a string");
        }
        s
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        let v = self.present(key)?;
        let b = v.as_bool();
        if b.is_none() {
            self.problem(key, " must be a boolean");
        }
        b
    }

    fn one_of(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
        let v = self.present(key)?;
        match v.as_string() {
            Some(s) if allowed.contains(&s.as_str()) => Some(s),
            _ => {
                let list = ["'", &allowed.join("', '"), "'"].concat();
                self.problem(key, &[" must be one of ", &list].concat());
                None
            }
        }
    }

    fn object(&mut self, key: &str) -> Option<JsValue> {
        let v = self.present(key)?;
        if is_plain_object(&v) {
            Some(v)
        } else {
            self.problem(key, " must be an object");
            None
        }
    }

    /// `v` as JSON text (a problem if it cannot be: a cycle, a BigInt).
    fn json(&mut self, v: &JsValue, key: &str) -> String {
        match JSON::stringify(v).ok().and_then(|s| s.as_string()) {
            Some(s) => s,
            None => {
                self.problem(key, " cannot be sent (not representable as JSON)");
                String::new()
            }
        }
    }

    /// The keys not in `known`, as a JSON object ("" when there are none).
    fn extra(&mut self, known: &[&str]) -> String {
        let rest = Object::new();
        let mut any = false;
        for key in Object::keys(self.obj.unchecked_ref::<Object>()).iter() {
            let Some(k) = key.as_string() else { continue };
            if !known.contains(&k.as_str()) {
                let _ = js_sys::Reflect::set(&rest, &key, &js::get(self.obj, &k));
                any = true;
            }
        }
        if any {
            self.json(&rest.into(), "(other keys)")
        } else {
            String::new()
        }
    }
}
