// Package tlsutil is berth's transport security: a small PKI (an ECDSA
// P-256 certificate authority and the certificates it signs) and a
// reloadable source of tls.Config values for mutual TLS between the CLI,
// servers and agents.
//
// Every certificate carries its role as a DNS name,
// "<role>.<region>.berth" (server.global.berth, agent.global.berth,
// cli.global.berth), the way Nomad writes server.global.nomad. A peer is
// accepted only when its certificate chains to the cluster's CA, is within
// its validity period, has the right extended key usage and names one of
// the roles the listener or dialer expects. So a CLI certificate can never
// serve as a server or an agent (it lacks ServerAuth and the role), and an
// agent certificate cannot join Raft (the Raft listener accepts servers
// only).
//
// Usage:
//
//	src, err := tlsutil.NewSource(tlsutil.Config{
//		CAFile: "berth-agent-ca.pem", CertFile: "global-server-berth.pem",
//		KeyFile: "global-server-berth-key.pem", Role: tlsutil.RoleServer,
//	})
//	ln = tls.NewListener(ln, src.ServerConfig(tlsutil.RoleServer, tlsutil.RoleAgent, tlsutil.RoleCLI))
//	tr.TLSClientConfig = src.ClientConfig(tlsutil.RoleServer)
//	go src.ReloadOnSIGHUP(ctx, logger)
//
// The tls.Config values never hold the certificate or the CA pool
// themselves: they call back into the Source, so Reload (or a SIGHUP)
// rotates both for every new connection without a restart, and a reload
// that fails keeps the previous files in force.
package tlsutil
