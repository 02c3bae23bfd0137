//! How the bootstraps are linked (functions/link_bootstrap.rs), checked on the cold-start floor,
//! which the same build script links: the functions of functions/startup-functions.txt come
//! first, together, in a section of their own, and nothing else is moved there.

use std::process::Command;

fn tool(name: &str, args: &[&str]) -> String {
    let output = Command::new(name).args(args).output().unwrap_or_else(|e| panic!("cannot run {name} (binutils): {e}"));
    assert!(output.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// (address, size) of a section, from `readelf -SW`.
fn section(listing: &str, name: &str) -> Option<(u64, u64)> {
    listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == name)?;
        let hex = |i: usize| fields.get(i).and_then(|f| u64::from_str_radix(f, 16).ok());
        // [Nr] Name Type Address Off Size …
        Some((hex(at + 2)?, hex(at + 4)?))
    })
}

#[test]
fn the_startup_functions_are_linked_first_together_and_alone() {
    let binary = env!("CARGO_BIN_EXE_coldstart_baseline");
    let list = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/startup-functions.txt")).expect("functions/startup-functions.txt");
    let listed: Vec<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(listed.len() > 100, "the list names {} functions", listed.len());
    // A listed name is a symbol up to its hash: it matches the symbols it begins.
    let is_listed = |symbol: &str| listed.iter().any(|name| symbol.starts_with(name));

    let sections = tool("readelf", &["-SW", binary]);
    let (start, size) = section(&sections, ".text.aftercare_startup").expect("the bootstrap has a .text.aftercare_startup section");
    let (text, _) = section(&sections, ".text").expect("the bootstrap has .text");
    assert!(size > 0 && start + size <= text, "the startup section ({start:#x}, {size} bytes) comes before .text ({text:#x})");

    let (mut listed_inside, mut listed_outside) = (0, 0);
    let mut listed_addresses = std::collections::HashSet::new();
    let mut others_inside = Vec::new();
    for line in tool("nm", &["--defined-only", binary]).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [address, kind, symbol] = fields[..] else { continue };
        if !matches!(kind, "t" | "T" | "W" | "w") {
            continue;
        }
        let Ok(address) = u64::from_str_radix(address, 16) else { continue };
        let inside = (start..start + size).contains(&address);
        match (is_listed(symbol), inside) {
            (true, true) => {
                listed_inside += 1;
                listed_addresses.insert(address);
            }
            (true, false) => listed_outside += 1,
            (false, true) => others_inside.push((address, symbol.to_owned())),
            (false, false) => {}
        }
    }
    // Functions with identical bodies share one (std's `take_error`s): another name of a
    // listed function is not a stranger.
    let strangers: Vec<&str> = others_inside.iter().filter(|(address, _)| !listed_addresses.contains(address)).map(|(_, s)| s.as_str()).collect();
    assert!(strangers.is_empty(), "functions the list does not name were moved first: {:?}", &strangers[..strangers.len().min(5)]);
    // Code from objects built without a section per function (the C runtime's) cannot move.
    assert!(listed_inside > 0 && listed_outside * 10 <= listed_inside, "{listed_inside} listed functions first, {listed_outside} left in .text");
}
