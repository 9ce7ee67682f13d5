//! KEEPALIVE, NOTIFICATION and ROUTE-REFRESH.

use super::{hex, round_trip};
use crate::{Context, Family, Message, Notification, RouteRefresh};

#[test]
fn keepalive() {
    let bytes = hex("ffffffffffffffffffffffffffffffff 0013 04");
    assert_eq!(round_trip(&bytes, &Context::default()), Message::Keepalive);
}

#[test]
fn notification_with_names_and_data() {
    let bytes = hex("ffffffffffffffffffffffffffffffff
         0017   # length 23
         03     # NOTIFICATION
         03 01  # UPDATE Message Error / Malformed Attribute List
         dead   # data");
    let Message::Notification(n) = round_trip(&bytes, &Context::default()) else {
        panic!("not a notification")
    };
    assert_eq!(n, Notification::new(3, 1, vec![0xde, 0xad]));
    assert_eq!(n.code_name(), "UPDATE Message Error");
    assert_eq!(n.subcode_name(), "Malformed Attribute List");
    assert_eq!(
        n.to_string(),
        "3/1 (UPDATE Message Error / Malformed Attribute List)"
    );
    assert_eq!(
        Notification::new(6, 2, vec![]).subcode_name(),
        "Administrative Shutdown"
    );
    assert_eq!(Notification::new(4, 0, vec![]).subcode_name(), "Unspecific");
    assert_eq!(Notification::new(9, 9, vec![]).code_name(), "Unknown");
}

#[test]
fn route_refresh_for_evpn() {
    let bytes = hex("ffffffffffffffffffffffffffffffff 0017 05
         0019  # AFI 25 (L2VPN)
         00    # subtype: normal request
         46    # SAFI 70 (EVPN)");
    assert_eq!(
        round_trip(&bytes, &Context::default()),
        Message::RouteRefresh(RouteRefresh {
            family: Family::L2VPN_EVPN,
            subtype: 0
        })
    );
}
