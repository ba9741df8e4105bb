#[test]
fn t() {
    for f in std::fs::read_dir("fuzz/artifacts/codec").unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        let m = pbx_sip::codec::parse(&bytes).unwrap();
        let w = pbx_sip::codec::serialize(&m.sip);
        println!("{:?}\n{}", m.top_via(), String::from_utf8_lossy(&w));
        println!("{:?}", pbx_sip::codec::parse(&w));
    }
}
