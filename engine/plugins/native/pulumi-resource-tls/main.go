// Command pulumi-resource-tls is the project's own native implementation of
// the part of the Pulumi "tls" provider that the project uses (PrivateKey,
// SelfSignedCert, CertRequest, LocallySignedCert), wire-compatible with the
// pulumi-tls Python SDK (tokens tls:index/...). The upstream provider is
// Terraform-bridged and its Go modules are not served by the Go module proxy
// reachable here. Semantics follow the documented behaviour of the provider:
// every input change replaces the resource, and certificates are replaced once
// they are within early_renewal_hours of their expiry.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // key identifiers and resource ids, as RFC 5280 suggests
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"golang.org/x/crypto/ssh"

	"mlflow-platform/engine/plugins/native/internal/shim"
)

// version is set by engine/build.sh (-ldflags -X main.version=...).
var version = "0.0.0-dev"

func pemString(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func algorithmOf(key crypto.PrivateKey) string {
	switch key.(type) {
	case *rsa.PrivateKey:
		return "RSA"
	case *ecdsa.PrivateKey:
		return "ECDSA"
	case ed25519.PrivateKey:
		return "ED25519"
	}
	return ""
}

func parsePrivateKey(s string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("failed to decode PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q for a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

func decodePEM(s, want string) ([]byte, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != want {
		return nil, fmt.Errorf("failed to decode PEM block %q", want)
	}
	return block.Bytes, nil
}

// ---- PrivateKey

var curves = map[string]elliptic.Curve{
	"P224": elliptic.P224(), "P256": elliptic.P256(), "P384": elliptic.P384(), "P521": elliptic.P521(),
}

func checkPrivateKey(in resource.PropertyMap) (resource.PropertyMap, []string) {
	var problems []string
	shim.Default(in, "rsaBits", 2048.0)
	shim.Default(in, "ecdsaCurve", "P224")
	if !shim.Known(in, "algorithm") {
		return in, nil
	}
	switch alg := shim.String(in, "algorithm"); alg {
	case "RSA", "ED25519":
	case "ECDSA":
		if _, ok := curves[shim.String(in, "ecdsaCurve")]; !ok && shim.Known(in, "ecdsaCurve") {
			problems = append(problems, "ecdsaCurve: must be one of P224, P256, P384, P521")
		}
	default:
		problems = append(problems, fmt.Sprintf("algorithm: must be one of RSA, ECDSA, ED25519, not %q", alg))
	}
	return in, problems
}

func createPrivateKey(in resource.PropertyMap) (string, resource.PropertyMap, error) {
	var key crypto.Signer
	var privPEM string
	var err error
	switch shim.String(in, "algorithm") {
	case "RSA":
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, shim.Int(in, "rsaBits")); err == nil {
			key, privPEM = k, pemString("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
		}
	case "ECDSA":
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(curves[shim.String(in, "ecdsaCurve")], rand.Reader); err == nil {
			var der []byte
			if der, err = x509.MarshalECPrivateKey(k); err == nil {
				key, privPEM = k, pemString("EC PRIVATE KEY", der)
			}
		}
	case "ED25519":
		var k ed25519.PrivateKey
		if _, k, err = ed25519.GenerateKey(rand.Reader); err == nil {
			var der []byte
			if der, err = x509.MarshalPKCS8PrivateKey(k); err == nil {
				key, privPEM = k, pemString("PRIVATE KEY", der)
			}
		}
	}
	if err != nil {
		return "", nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", nil, err
	}
	outs := resource.PropertyMap{
		"privateKeyPem":              resource.NewStringProperty(privPEM),
		"privateKeyPemPkcs8":         resource.NewStringProperty(pemString("PRIVATE KEY", pkcs8)),
		"publicKeyPem":               resource.NewStringProperty(pemString("PUBLIC KEY", pubDER)),
		"privateKeyOpenssh":          resource.NewStringProperty(""),
		"publicKeyOpenssh":           resource.NewStringProperty(""),
		"publicKeyFingerprintMd5":    resource.NewStringProperty(""),
		"publicKeyFingerprintSha256": resource.NewStringProperty(""),
	}
	// OpenSSH has no P-224 keys: those outputs stay empty, as upstream documents.
	if sshPub, err := ssh.NewPublicKey(key.Public()); err == nil {
		outs["publicKeyOpenssh"] = resource.NewStringProperty(string(ssh.MarshalAuthorizedKey(sshPub)))
		outs["publicKeyFingerprintMd5"] = resource.NewStringProperty(ssh.FingerprintLegacyMD5(sshPub))
		outs["publicKeyFingerprintSha256"] = resource.NewStringProperty(ssh.FingerprintSHA256(sshPub))
		if block, err := ssh.MarshalPrivateKey(key, ""); err == nil {
			outs["privateKeyOpenssh"] = resource.NewStringProperty(string(pem.EncodeToMemory(block)))
		}
	}
	sum := sha1.Sum(pubDER) //nolint:gosec
	return hex.EncodeToString(sum[:]), outs, nil
}

// ---- certificates

var keyUsages = map[string]x509.KeyUsage{
	"digital_signature":  x509.KeyUsageDigitalSignature,
	"content_commitment": x509.KeyUsageContentCommitment,
	"key_encipherment":   x509.KeyUsageKeyEncipherment,
	"data_encipherment":  x509.KeyUsageDataEncipherment,
	"key_agreement":      x509.KeyUsageKeyAgreement,
	"cert_signing":       x509.KeyUsageCertSign,
	"crl_signing":        x509.KeyUsageCRLSign,
	"encipher_only":      x509.KeyUsageEncipherOnly,
	"decipher_only":      x509.KeyUsageDecipherOnly,
}

var extKeyUsages = map[string]x509.ExtKeyUsage{
	"any_extended":                  x509.ExtKeyUsageAny,
	"server_auth":                   x509.ExtKeyUsageServerAuth,
	"client_auth":                   x509.ExtKeyUsageClientAuth,
	"code_signing":                  x509.ExtKeyUsageCodeSigning,
	"email_protection":              x509.ExtKeyUsageEmailProtection,
	"ipsec_end_system":              x509.ExtKeyUsageIPSECEndSystem,
	"ipsec_tunnel":                  x509.ExtKeyUsageIPSECTunnel,
	"ipsec_user":                    x509.ExtKeyUsageIPSECUser,
	"timestamping":                  x509.ExtKeyUsageTimeStamping,
	"ocsp_signing":                  x509.ExtKeyUsageOCSPSigning,
	"microsoft_server_gated_crypto": x509.ExtKeyUsageMicrosoftServerGatedCrypto,
	"netscape_server_gated_crypto":  x509.ExtKeyUsageNetscapeServerGatedCrypto,
}

func subject(m resource.PropertyMap) pkix.Name {
	one := func(k string) []string {
		if s := shim.String(m, k); s != "" {
			return []string{s}
		}
		return nil
	}
	return pkix.Name{
		CommonName:         shim.String(m, "commonName"),
		Country:            one("country"),
		Locality:           one("locality"),
		Organization:       one("organization"),
		OrganizationalUnit: one("organizationalUnit"),
		PostalCode:         one("postalCode"),
		Province:           one("province"),
		SerialNumber:       shim.String(m, "serialNumber"),
		StreetAddress:      shim.Strings(m, "streetAddresses"),
		ExtraNames:         emailName(shim.String(m, "emailAddress")),
	}
}

func emailName(email string) []pkix.AttributeTypeAndValue {
	if email == "" {
		return nil
	}
	return []pkix.AttributeTypeAndValue{{Type: []int{1, 2, 840, 113549, 1, 9, 1}, Value: email}}
}

func sans(in resource.PropertyMap) ([]string, []net.IP, []*url.URL, error) {
	var ips []net.IP
	for _, s := range shim.Strings(in, "ipAddresses") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, nil, nil, fmt.Errorf("invalid IP address %q", s)
		}
		ips = append(ips, ip)
	}
	var uris []*url.URL
	for _, s := range shim.Strings(in, "uris") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("invalid URI %q: %w", s, err)
		}
		uris = append(uris, u)
	}
	return shim.Strings(in, "dnsNames"), ips, uris, nil
}

func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1BitString
	}
	if _, err := asn1Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec
	return sum[:], nil
}

func checkCert(required ...string) func(resource.PropertyMap) (resource.PropertyMap, []string) {
	return func(in resource.PropertyMap) (resource.PropertyMap, []string) {
		var problems []string
		for _, k := range required {
			if _, ok := in[resource.PropertyKey(k)]; !ok {
				problems = append(problems, fmt.Sprintf("%s: missing required property %q", k, k))
			}
		}
		shim.Default(in, "earlyRenewalHours", 0.0)
		shim.Default(in, "isCaCertificate", false)
		shim.Default(in, "setSubjectKeyId", false)
		if _, ok := in["allowedUses"]; ok && shim.Known(in, "allowedUses") {
			for _, u := range shim.Strings(in, "allowedUses") {
				_, k := keyUsages[u]
				_, e := extKeyUsages[u]
				if !k && !e {
					problems = append(problems, fmt.Sprintf("allowedUses: unknown use %q", u))
				}
			}
		}
		return in, problems
	}
}

func template(in resource.PropertyMap, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now,
		NotAfter:              now.Add(time.Duration(shim.Int(in, "validityPeriodHours")) * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  shim.Bool(in, "isCaCertificate"),
	}
	for _, u := range shim.Strings(in, "allowedUses") {
		if ku, ok := keyUsages[u]; ok {
			t.KeyUsage |= ku
		}
		if eku, ok := extKeyUsages[u]; ok {
			t.ExtKeyUsage = append(t.ExtKeyUsage, eku)
		}
	}
	if t.IsCA {
		if v, ok := in["maxPathLength"]; ok && v.IsNumber() {
			t.MaxPathLen = int(v.NumberValue())
			t.MaxPathLenZero = t.MaxPathLen == 0
		} else {
			t.MaxPathLen = -1
		}
	}
	return t, nil
}

func certOutputs(der []byte, t *x509.Certificate) resource.PropertyMap {
	return resource.PropertyMap{
		"certPem":           resource.NewStringProperty(pemString("CERTIFICATE", der)),
		"validityStartTime": resource.NewStringProperty(t.NotBefore.UTC().Format(time.RFC3339)),
		"validityEndTime":   resource.NewStringProperty(t.NotAfter.UTC().Format(time.RFC3339)),
		"readyForRenewal":   resource.NewBoolProperty(false),
	}
}

func privateKeyInput(in resource.PropertyMap, k string) string {
	if s := shim.String(in, k); s != "" {
		return s
	}
	return shim.String(in, k+"Wo")
}

func createSelfSigned(in resource.PropertyMap) (string, resource.PropertyMap, error) {
	key, err := parsePrivateKey(privateKeyInput(in, "privateKeyPem"))
	if err != nil {
		return "", nil, err
	}
	t, err := template(in, time.Now())
	if err != nil {
		return "", nil, err
	}
	t.Subject = subject(shim.Object(in, "subject"))
	if t.DNSNames, t.IPAddresses, t.URIs, err = sans(in); err != nil {
		return "", nil, err
	}
	if shim.Bool(in, "setSubjectKeyId") || shim.Bool(in, "setAuthorityKeyId") {
		id, err := keyID(key.Public())
		if err != nil {
			return "", nil, err
		}
		if shim.Bool(in, "setSubjectKeyId") {
			t.SubjectKeyId = id
		}
		if shim.Bool(in, "setAuthorityKeyId") {
			t.AuthorityKeyId = id
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return "", nil, err
	}
	outs := certOutputs(der, t)
	outs["keyAlgorithm"] = resource.NewStringProperty(algorithmOf(key))
	return t.SerialNumber.String(), outs, nil
}

func createLocallySigned(in resource.PropertyMap) (string, resource.PropertyMap, error) {
	caKey, err := parsePrivateKey(privateKeyInput(in, "caPrivateKeyPem"))
	if err != nil {
		return "", nil, fmt.Errorf("caPrivateKeyPem: %w", err)
	}
	caDER, err := decodePEM(shim.String(in, "caCertPem"), "CERTIFICATE")
	if err != nil {
		return "", nil, fmt.Errorf("caCertPem: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", nil, fmt.Errorf("caCertPem: %w", err)
	}
	csrDER, err := decodePEM(shim.String(in, "certRequestPem"), "CERTIFICATE REQUEST")
	if err != nil {
		return "", nil, fmt.Errorf("certRequestPem: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return "", nil, fmt.Errorf("certRequestPem: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return "", nil, fmt.Errorf("certRequestPem: %w", err)
	}
	t, err := template(in, time.Now())
	if err != nil {
		return "", nil, err
	}
	t.Subject = csr.Subject
	t.DNSNames, t.IPAddresses, t.URIs, t.EmailAddresses = csr.DNSNames, csr.IPAddresses, csr.URIs, csr.EmailAddresses
	if shim.Bool(in, "setSubjectKeyId") {
		if t.SubjectKeyId, err = keyID(csr.PublicKey); err != nil {
			return "", nil, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca, csr.PublicKey, caKey)
	if err != nil {
		return "", nil, err
	}
	outs := certOutputs(der, t)
	outs["caKeyAlgorithm"] = resource.NewStringProperty(algorithmOf(caKey))
	return t.SerialNumber.String(), outs, nil
}

func createCertRequest(in resource.PropertyMap) (string, resource.PropertyMap, error) {
	key, err := parsePrivateKey(privateKeyInput(in, "privateKeyPem"))
	if err != nil {
		return "", nil, err
	}
	t := &x509.CertificateRequest{Subject: subject(shim.Object(in, "subject"))}
	if t.DNSNames, t.IPAddresses, t.URIs, err = sans(in); err != nil {
		return "", nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, t, key)
	if err != nil {
		return "", nil, err
	}
	pemStr := pemString("CERTIFICATE REQUEST", der)
	sum := sha1.Sum([]byte(pemStr)) //nolint:gosec
	return hex.EncodeToString(sum[:]), resource.PropertyMap{
		"certRequestPem": resource.NewStringProperty(pemStr),
		"keyAlgorithm":   resource.NewStringProperty(algorithmOf(key)),
	}, nil
}

// dueForRenewal: the certificate has expired or is within earlyRenewalHours of it.
func dueForRenewal(state resource.PropertyMap) bool {
	end, err := time.Parse(time.RFC3339, shim.String(state, "validityEndTime"))
	if err != nil {
		return false
	}
	early := time.Duration(shim.Int(state, "earlyRenewalHours")) * time.Hour
	return !time.Now().Before(end.Add(-early))
}

func renewal(state resource.PropertyMap) (string, bool) {
	return "readyForRenewal", dueForRenewal(state)
}

func refreshCert(state resource.PropertyMap) resource.PropertyMap {
	state = state.Copy()
	if _, ok := state["validityEndTime"]; ok {
		state["readyForRenewal"] = resource.NewBoolProperty(dueForRenewal(state))
	}
	return state
}

func main() {
	p := &shim.Provider{
		Name:    "tls",
		Version: version,
		Resources: map[string]*shim.Resource{
			"tls:index/privateKey:PrivateKey": {
				Inputs: []string{"algorithm", "ecdsaCurve", "rsaBits"},
				Check:  checkPrivateKey,
				Create: createPrivateKey,
			},
			"tls:index/selfSignedCert:SelfSignedCert": {
				Inputs: []string{"allowedUses", "dnsNames", "earlyRenewalHours", "ipAddresses", "isCaCertificate",
					"maxPathLength", "privateKeyPem", "privateKeyPemWo", "privateKeyPemWoVersion",
					"setAuthorityKeyId", "setSubjectKeyId", "subject", "uris", "validityPeriodHours"},
				Updatable:    []string{"earlyRenewalHours"},
				Check:        checkCert("allowedUses", "validityPeriodHours"),
				Create:       createSelfSigned,
				NeedsReplace: renewal,
				Refresh:      refreshCert,
			},
			"tls:index/locallySignedCert:LocallySignedCert": {
				Inputs: []string{"allowedUses", "caCertPem", "caPrivateKeyPem", "caPrivateKeyPemWo",
					"caPrivateKeyPemWoVersion", "certRequestPem", "earlyRenewalHours", "isCaCertificate",
					"maxPathLength", "setSubjectKeyId", "validityPeriodHours"},
				Updatable:    []string{"earlyRenewalHours"},
				Check:        checkCert("allowedUses", "validityPeriodHours", "caCertPem", "certRequestPem"),
				Create:       createLocallySigned,
				NeedsReplace: renewal,
				Refresh:      refreshCert,
			},
			"tls:index/certRequest:CertRequest": {
				Inputs: []string{"dnsNames", "ipAddresses", "privateKeyPem", "privateKeyPemWo",
					"privateKeyPemWoVersion", "subject", "uris"},
				Check:  func(in resource.PropertyMap) (resource.PropertyMap, []string) { return in, nil },
				Create: createCertRequest,
			},
		},
	}
	if err := p.Main(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
