// Package certs loads the PEM files the commands' TLS flags name, with errors naming the flag.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Pool reads a CA bundle; flag names the option it came from.
func Pool(flag, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, path)
	}
	return pool, nil
}

// KeyPair reads a certificate and its key; flags names the options they came from.
func KeyPair(flags, certPath, keyPath string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", flags, err)
	}
	return cert, nil
}
