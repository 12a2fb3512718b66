//! A `gear.conf` (or an application's config text): it parses and validates, or is an error
//! naming what is wrong; never a panic.
#![no_main]

use gearpump_config::GearConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(conf) = GearConfig::defaults().with_str("fuzz.conf", text) {
        let _ = conf.validate();
        let _ = conf.masters();
        let _ = conf.port_limits();
        let _ = conf.services_port();
        // What a daemon hands its children must read back.
        let _ = GearConfig::defaults().with_str("round trip", &conf.to_hocon());
    }
});
