package detect

import (
	"strconv"
	"strings"
)

// Service is an entry of the catalogue that labels alerts: a UDP
// service abused for reflection and amplification, or a login service
// password guessers go for. Rules recognise attacks by behaviour; the
// catalogue only names what the key's port is.
type Service struct {
	Name  string
	Proto uint8 // 6 or 17
	Port  uint16
	// Amplification is the bandwidth amplification factor reported for
	// the service (response bytes per request byte), as published: "556.9",
	// "28-54". Empty for login services.
	Amplification string
	Source        string // where the factor or the abuse is documented
}

const (
	cisa       = "CISA alert TA14-017A (UDP-based amplification attacks)"
	netscout   = "NETSCOUT ASERT threat reports"
	akamai     = "Akamai SIRT threat advisories"
	loginGuess = "MITRE ATT&CK T1110 (brute force)"
)

// Services is the catalogue, by protocol and port.
var Services = []Service{
	// UDP reflection and amplification.
	{"qotd", 17, 17, "140.3", cisa},
	{"chargen", 17, 19, "358.8", cisa},
	{"dns", 17, 53, "28-54", cisa},
	{"tftp", 17, 69, "60", "Sieklik et al., TFTP reflection (2016)"},
	{"portmap", 17, 111, "7-28", cisa},
	{"ntp", 17, 123, "556.9", cisa},
	{"netbios", 17, 137, "3.8", cisa},
	{"snmp", 17, 161, "6.3", cisa},
	{"cldap", 17, 389, "46-55", cisa},
	{"slp", 17, 427, "2200", "CISA and BSI, CVE-2023-29552 (2023)"},
	{"isakmp", 17, 500, "", netscout},
	{"ripv1", 17, 520, "131.24", cisa},
	{"mssql", 17, 1434, "25", akamai},
	{"ssdp", 17, 1900, "30.8", cisa},
	{"arms", 17, 3283, "35.5", cisa},
	{"stun", 17, 3478, "2.3", netscout},
	{"ws-discovery", 17, 3702, "10-500", cisa},
	{"mdns", 17, 5353, "2-10", cisa},
	{"coap", 17, 5683, "10-50", cisa},
	{"bittorrent", 17, 6881, "3.8", cisa},
	{"ubiquiti", 17, 10001, "30-35", netscout},
	{"tp240", 17, 10074, "4294967296", akamai},
	{"memcached", 17, 11211, "10000-51000", cisa},
	{"vxworks-wdb", 17, 17185, "", netscout},
	{"quake", 17, 26000, "63.9", cisa},
	{"steam", 17, 27015, "5.5", cisa},
	{"quake3", 17, 27960, "", netscout},
	{"plex", 17, 32414, "4.68", netscout},
	{"jenkins", 17, 33848, "100", cisa},
	{"dvr-dhcpdiscover", 17, 37810, "153", netscout},
	{"bacnet", 17, 47808, "", netscout},
	{"quic", 17, 443, "", "RFC 9000 (QUIC): servers answer from 443"},
	// TCP: login services, and what TCP reflection answers from.
	{"ftp", 6, 21, "", loginGuess},
	{"ssh", 6, 22, "", loginGuess},
	{"telnet", 6, 23, "", loginGuess},
	{"smtp", 6, 25, "", loginGuess},
	{"dns", 6, 53, "", ""},
	{"http", 6, 80, "", ""},
	{"kerberos", 6, 88, "", loginGuess},
	{"pop3", 6, 110, "", loginGuess},
	{"netbios-ssn", 6, 139, "", loginGuess},
	{"imap", 6, 143, "", loginGuess},
	{"ldap", 6, 389, "", loginGuess},
	{"https", 6, 443, "", ""},
	{"smb", 6, 445, "", loginGuess},
	{"smtps", 6, 465, "", loginGuess},
	{"submission", 6, 587, "", loginGuess},
	{"ldaps", 6, 636, "", loginGuess},
	{"imaps", 6, 993, "", loginGuess},
	{"pop3s", 6, 995, "", loginGuess},
	{"mssql", 6, 1433, "", loginGuess},
	{"oracle", 6, 1521, "", loginGuess},
	{"mysql", 6, 3306, "", loginGuess},
	{"rdp", 6, 3389, "", loginGuess},
	{"postgres", 6, 5432, "", loginGuess},
	{"vnc", 6, 5900, "", loginGuess},
	{"vnc", 6, 5901, "", loginGuess},
	{"winrm", 6, 5985, "", loginGuess},
	{"winrm", 6, 5986, "", loginGuess},
	{"redis", 6, 6379, "", loginGuess},
	{"http-alt", 6, 8080, "", ""},
	{"mongodb", 6, 27017, "", loginGuess},
}

var serviceIndex = func() map[uint32]*Service {
	m := make(map[uint32]*Service, len(Services))
	for i := range Services {
		s := &Services[i]
		m[uint32(s.Proto)<<16|uint32(s.Port)] = s
	}
	return m
}()

// amplifierPorts and loginPorts are the catalogue's UDP amplifiers and
// TCP login services, by port, for the filter fields amplifier_port and
// login_port.
var amplifierPorts, loginPorts = func() (a, l *[65536]bool) {
	a, l = new([65536]bool), new([65536]bool)
	for _, s := range Services {
		switch {
		case s.Proto == 17 && s.Source != "" && s.Name != "quic":
			a[s.Port] = true
		case s.Proto == 6 && s.Source == loginGuess:
			l[s.Port] = true
		}
	}
	return a, l
}()

// LookupService finds a catalogue entry.
func LookupService(proto uint8, port uint16) (*Service, bool) {
	s, ok := serviceIndex[uint32(proto)<<16|uint32(port)]
	return s, ok
}

// serviceLabel names a port for an alert: the catalogue's name, or
// "udp/40000" for one it does not know.
func serviceLabel(proto uint8, port uint16) string {
	if s, ok := LookupService(proto, port); ok {
		return s.Name
	}
	var b strings.Builder
	switch proto {
	case 6:
		b.WriteString("tcp/")
	case 17:
		b.WriteString("udp/")
	default:
		b.WriteString(strconv.Itoa(int(proto)) + "/")
	}
	b.WriteString(strconv.Itoa(int(port)))
	return b.String()
}
