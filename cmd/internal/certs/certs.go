// Package certs loads the PEM files the commands' TLS flags name, with errors naming the flag, and
// keeps server TLS configurations current when those files are renewed.
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
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

// ServerConfig is a server TLS configuration whose certificate, key and (when clientCAFile is
// set) client CA are re-read whenever their files change, as cert-manager or the kubelet's
// Secret volumes renew them: no restart needed. The files are watched until ctx ends.
// certFlags and caFlag name the options the files came from, for errors.
func ServerConfig(ctx context.Context, certFlags, certFile, keyFile, caFlag, clientCAFile string) (*tls.Config, error) {
	if _, err := KeyPair(certFlags, certFile, keyFile); err != nil {
		return nil, err
	}
	serving, err := dynamiccertificates.NewDynamicServingContentFromFiles("serving-cert", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFlags, err)
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	var clientCA dynamiccertificates.CAContentProvider
	var caContent *dynamiccertificates.DynamicFileCAContent
	if clientCAFile != "" {
		if _, err := Pool(caFlag, clientCAFile); err != nil {
			return nil, err
		}
		if caContent, err = dynamiccertificates.NewDynamicCAContentFromFile("client-ca", clientCAFile); err != nil {
			return nil, fmt.Errorf("%s: %w", caFlag, err)
		}
		clientCA = caContent
		base.ClientAuth = tls.RequireAndVerifyClientCert
	}
	controller := dynamiccertificates.NewDynamicServingCertificateController(base, clientCA, serving, nil, nil)
	serving.AddListener(controller)
	if caContent != nil {
		caContent.AddListener(controller)
		go caContent.Run(ctx, 1)
	}
	if err := controller.RunOnce(); err != nil {
		return nil, fmt.Errorf("%s: %w", certFlags, err)
	}
	go serving.Run(ctx, 1)
	go controller.Run(1, ctx.Done())
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: controller.GetConfigForClient}, nil
}

// ClientConfig is a client TLS configuration whose certificate and key, and the CA the server
// is verified against, are re-read whenever their files change. serverName, when set, is the
// name the server's certificate must carry. Without it the server is checked against the
// address dialled by Go's own verification, with the CA as read at start (a renewed CA then
// needs a restart).
func ClientConfig(ctx context.Context, certFlags, certFile, keyFile, caFlag, caFile, serverName string) (*tls.Config, error) {
	if _, err := KeyPair(certFlags, certFile, keyFile); err != nil {
		return nil, err
	}
	if _, err := Pool(caFlag, caFile); err != nil {
		return nil, err
	}
	pair, err := dynamiccertificates.NewDynamicServingContentFromFiles("client-cert", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFlags, err)
	}
	ca, err := dynamiccertificates.NewDynamicCAContentFromFile("server-ca", caFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caFlag, err)
	}
	go pair.Run(ctx, 1)
	go ca.Run(ctx, 1)
	var mu sync.Mutex
	var cachedPEM []byte
	var cached *tls.Certificate
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			certPEM, keyPEM := pair.CurrentCertKeyContent()
			mu.Lock()
			defer mu.Unlock()
			if cached == nil || !bytes.Equal(certPEM, cachedPEM) {
				c, err := tls.X509KeyPair(certPEM, keyPEM)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", certFlags, err)
				}
				cached, cachedPEM = &c, certPEM
			}
			return cached, nil
		},
	}
	if serverName == "" {
		conf.RootCAs, _ = Pool(caFlag, caFile)
		return conf, nil
	}
	// The server is verified here, against the CA as it is now and the name given.
	conf.InsecureSkipVerify = true
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		opts, ok := ca.VerifyOptions()
		if !ok || len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%s: no CA to verify the server with", caFlag)
		}
		opts.DNSName = serverName
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		opts.Intermediates = x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		return err
	}
	return conf, nil
}
