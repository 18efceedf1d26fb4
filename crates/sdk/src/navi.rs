//! `navi` as a list of servers (issue 15): a multi-node rcall deployment gives the client
//! several nodes, and a client whose node dies reconnects to another one.
//!
//! `RongIMLib.init({navi})` takes a string, a comma-separated string or an array of strings
//! (`navigators`: all its entries). [`parse`] turns them into WebSocket URLs at `init()`, so a
//! typo is an exception there rather than a failed connect later. [`NaviList`] is the rotation:
//! connecting starts with the URL that last worked; a URL that fails (closed or errored before
//! `AuthResult`, timed out) hands over to the next at once, and only a whole round of failures
//! lets the reconnect backoff grow (`im::reconnect_delay`). With one URL every failure is a
//! whole round, so a single `navi` behaves as it always did.

/// Splits and converts the `navi` entries: each entry may hold several URLs separated by
/// commas; blank pieces are skipped (a trailing comma is harmless). `Ok(empty)` = no navi
/// given (the page's origin is used). `secure_page`: the page is https, so a bare `host[:port]`
/// becomes `wss://`. The error names the first bad entry.
pub fn parse(entries: &[String], secure_page: bool) -> Result<Vec<String>, String> {
    let mut urls = Vec::new();
    for piece in entries.iter().flat_map(|e| e.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
        match websocket_url_for(piece, secure_page) {
            Some(url) => urls.push(url),
            None => {
                let expected = "a server URL (http(s)://host[:port][/path], ws(s)://…) or a host[:port]";
                return Err(["navi entry \"", piece, "\" is not ", expected].concat());
            }
        }
    }
    Ok(urls)
}

/// `ws(s)://host/ws` for a navi base URL `http(s)://host[/path]` (or `ws(s)://`, kept). IMLib
/// 2.X apps give `navi` as a bare `host[:port]` or `//host` (their SDK put the scheme in front):
/// those take the page's scheme (`secure_page`: https → wss). `None` for anything that is not
/// a host with an optional port and path.
pub fn websocket_url_for(navi: &str, secure_page: bool) -> Option<String> {
    let navi = navi.trim_end_matches('/');
    // The first "://" by bytes, not `split_once("://")`: a string pattern pulls in core's
    // two-way searcher (~2 KB of wasm).
    // `get`, not `&navi[..i]`: the only str slicing that could panic here would keep core's
    // slice-error message (and its char Debug) in the wasm.
    let sep = navi.as_bytes().windows(3).position(|w| w == b"://").and_then(|i| Some((navi.get(..i)?, navi.get(i + 3..)?)));
    let (scheme, rest) = match sep {
        None => (if secure_page { "wss" } else { "ws" }, navi.strip_prefix("//").unwrap_or(navi)),
        Some(("https" | "wss", rest)) => ("wss", rest),
        Some(("http" | "ws", rest)) => ("ws", rest),
        Some(_) => return None,
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if !valid_authority(authority) || path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return None;
    }
    let slash = if path.is_empty() { "" } else { "/" };
    Some([scheme, "://", authority, slash, path, "/ws"].concat())
}

/// `host[:port]`: a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`; any non-ASCII
/// letter of an internationalised name is let through for the browser to judge), or an IPv6
/// address in brackets; the port 1–65535.
fn valid_authority(a: &str) -> bool {
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else { return false };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return false,
            },
        }
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let host_char = |c: char| c.is_ascii_alphanumeric() || !c.is_ascii() || matches!(c, '-' | '.' | '_');
    let host_ok = a.starts_with('[') || (!host.is_empty() && host.chars().all(host_char));
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)));
    host_ok && port_ok
}

/// The servers to connect to, in order, and where the next attempt goes.
#[derive(Debug, Clone, PartialEq)]
pub struct NaviList {
    urls: Vec<String>,
    current: usize,
    /// Failures since the round started (see [`NaviList::next_after_failure`]).
    failed_in_round: usize,
}

impl NaviList {
    /// `None` for an empty list.
    pub fn new(urls: Vec<String>) -> Option<NaviList> {
        (!urls.is_empty()).then_some(NaviList { urls, current: 0, failed_in_round: 0 })
    }

    /// Where the next attempt goes: the URL that last worked, or the one after the last failure.
    pub fn current(&self) -> &str {
        &self.urls[self.current]
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// A connect (or a reconnect series) begins: the next [`NaviList::len`] failures make a round.
    pub fn start_round(&mut self) {
        self.failed_in_round = 0;
    }

    /// The current URL failed: the next one is current. True when this completes a round
    /// (every URL failed once since [`NaviList::start_round`]); the next round starts then.
    pub fn next_after_failure(&mut self) -> bool {
        self.current = (self.current + 1) % self.urls.len();
        self.failed_in_round += 1;
        if self.failed_in_round >= self.urls.len() {
            self.failed_in_round = 0;
            return true;
        }
        false
    }

    /// The connection on the current URL was lost mid-session: reconnecting starts a new round
    /// with the next URL, so a node that just died is not the first one retried.
    pub fn lost(&mut self) {
        self.next_after_failure();
        self.start_round();
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, websocket_url_for, NaviList};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_takes_one_url_a_comma_list_or_an_array() {
        assert_eq!(parse(&strings(&["http://a:1"]), false).unwrap(), ["ws://a:1/ws"]);
        assert_eq!(
            parse(&strings(&["http://a:1, https://b.example.com/rc ,c:3"]), false).unwrap(),
            ["ws://a:1/ws", "wss://b.example.com/rc/ws", "ws://c:3/ws"]
        );
        assert_eq!(parse(&strings(&["http://a:1", "b:2,", " "]), true).unwrap(), ["ws://a:1/ws", "wss://b:2/ws"]);
        assert!(parse(&[], false).unwrap().is_empty(), "no navi: the page's origin");
        assert!(parse(&strings(&["", " , "]), false).unwrap().is_empty());
    }

    #[test]
    fn parse_names_the_bad_entry() {
        let err = parse(&strings(&["http://a:1", "not a url"]), false).unwrap_err();
        assert!(err.contains("\"not a url\""), "{err}");
        let err = parse(&strings(&["http://a:1,ftp://b"]), false).unwrap_err();
        assert!(err.contains("\"ftp://b\""), "{err}");
        let bad = ["http://", "http://a:99999", "http://a:", "a:b", "javascript:alert(1)", "http://a b", "[::1", "http://a/x?y"];
        for bad in bad {
            assert!(parse(&strings(&[bad]), false).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn navi_becomes_websocket_url() {
        assert_eq!(websocket_url_for("http://127.0.0.1:8080", false).as_deref(), Some("ws://127.0.0.1:8080/ws"));
        assert_eq!(websocket_url_for("https://call.example.com/", false).as_deref(), Some("wss://call.example.com/ws"));
        let base = websocket_url_for("wss://call.example.com/base", false);
        assert_eq!(base.as_deref(), Some("wss://call.example.com/base/ws"));
        assert_eq!(websocket_url_for("http://[::1]:80", false).as_deref(), Some("ws://[::1]:80/ws"));
        assert_eq!(websocket_url_for("ftp://x", false), None);
    }

    #[test]
    fn bare_navi_takes_the_page_scheme() {
        assert_eq!(websocket_url_for("127.0.0.1:8080", false).as_deref(), Some("ws://127.0.0.1:8080/ws"));
        assert_eq!(websocket_url_for("//call.example.com/", true).as_deref(), Some("wss://call.example.com/ws"));
        assert_eq!(websocket_url_for("http://a:1", true).as_deref(), Some("ws://a:1/ws"), "an explicit scheme wins");
        assert_eq!(websocket_url_for("", false), None);
        assert_eq!(websocket_url_for("//", false), None);
    }

    #[test]
    fn a_failure_moves_on_and_a_round_ends_after_every_url_failed() {
        let mut l = NaviList::new(strings(&["a", "b", "c"])).unwrap();
        l.start_round();
        assert_eq!(l.current(), "a");
        assert!(!l.next_after_failure());
        assert_eq!(l.current(), "b");
        assert!(!l.next_after_failure());
        assert_eq!(l.current(), "c");
        assert!(l.next_after_failure(), "a, b and c failed: the round is over");
        assert_eq!(l.current(), "a");
        assert!(!l.next_after_failure(), "the next round has started");
        assert!(NaviList::new(Vec::new()).is_none());
    }

    #[test]
    fn the_url_that_worked_is_where_the_next_connect_starts() {
        let mut l = NaviList::new(strings(&["a", "b"])).unwrap();
        l.start_round();
        l.next_after_failure(); // a is dead, b works
        assert_eq!(l.current(), "b");
        l.start_round(); // a later connect
        assert_eq!(l.current(), "b");
    }

    #[test]
    fn a_lost_connection_retries_the_next_url_first() {
        let mut l = NaviList::new(strings(&["a", "b", "c"])).unwrap();
        l.next_after_failure(); // connected to b
        l.lost();
        assert_eq!(l.current(), "c", "b just died");
        assert!(!l.next_after_failure());
        assert_eq!(l.current(), "a");
        assert!(!l.next_after_failure());
        assert_eq!(l.current(), "b");
        assert!(l.next_after_failure(), "c, a and b failed after the loss: a whole round");
    }

    #[test]
    fn a_single_url_is_a_round_of_its_own() {
        let mut l = NaviList::new(strings(&["a"])).unwrap();
        l.lost();
        assert_eq!(l.current(), "a");
        assert!(l.next_after_failure(), "every failure of a single URL is a whole round: backoff as before");
        assert!(l.next_after_failure());
        assert_eq!(l.current(), "a");
    }
}
