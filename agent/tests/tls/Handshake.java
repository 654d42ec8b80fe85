// A mutual-TLS handshake between a server and a client built the way Flink 2.3's SSLUtils builds
// them (PKCS12 key and trust stores, the JDK's default KeyManagerFactory and TrustManagerFactory,
// one protocol, an explicit suite list), so a test can prove that Java 17 accepts the stores the
// agent writes. The client also checks the server's host name (endpoint identification HTTPS),
// as Flink's Netty data-plane client does.
//
// Usage: java -cp DIR Handshake PROTOCOL SUITES SERVER_KS SERVER_TS CLIENT_KS CLIENT_TS PW PW PW PW
// (stores are file paths; the four passwords follow in the same order).
// Prints "OK <protocol> <suite>" and exits 0, or "FAIL <reason>" and exits 1.

import java.io.FileInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.security.KeyStore;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class Handshake {
    static KeyStore load(String path, String password) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(path)) {
            ks.load(in, password.toCharArray());
        }
        return ks;
    }

    static SSLContext context(String protocol, String ks, String ksPw, String ts, String tsPw)
            throws Exception {
        KeyManagerFactory kmf =
                KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(load(ks, ksPw), ksPw.toCharArray());
        TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(load(ts, tsPw));
        SSLContext ctx = SSLContext.getInstance(protocol);
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return ctx;
    }

    public static void main(String[] a) throws Exception {
        String protocol = a[0];
        String[] suites = a[1].split(",");
        String[] protocols = {protocol};
        SSLContext server = context(protocol, a[2], a[6], a[3], a[7]);
        SSLContext client = context(protocol, a[4], a[8], a[5], a[9]);

        SSLServerSocket ss = (SSLServerSocket) server.getServerSocketFactory()
                .createServerSocket(0, 1, InetAddress.getByName("127.0.0.1"));
        ss.setNeedClientAuth(true);
        ss.setEnabledProtocols(protocols);
        ss.setEnabledCipherSuites(suites);
        ss.setSoTimeout(15000);
        AtomicReference<Throwable> serverError = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try (SSLSocket s = (SSLSocket) ss.accept()) {
                s.setSoTimeout(15000);
                s.startHandshake();
                int b = s.getInputStream().read();
                s.getOutputStream().write(b);
                s.getOutputStream().flush();
            } catch (Throwable e) {
                serverError.set(e);
            }
        });
        t.start();

        String result;
        try (SSLSocket s = (SSLSocket) client.getSocketFactory()
                .createSocket("127.0.0.1", ss.getLocalPort())) {
            s.setSoTimeout(15000);
            SSLParameters p = s.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS");
            p.setProtocols(protocols);
            p.setCipherSuites(suites);
            s.setSSLParameters(p);
            s.startHandshake();
            OutputStream out = s.getOutputStream();
            out.write(42);
            out.flush();
            int echoed = s.getInputStream().read();
            if (echoed != 42) {
                throw new IllegalStateException("echo returned " + echoed);
            }
            result = "OK " + s.getSession().getProtocol() + " " + s.getSession().getCipherSuite();
        } catch (Throwable e) {
            result = "FAIL client: " + e;
        }
        t.join(20000);
        ss.close();
        if (serverError.get() != null) {
            result = (result.startsWith("OK") ? "FAIL" : result + ";") + " server: " + serverError.get();
        }
        System.out.println(result);
        System.exit(result.startsWith("OK") ? 0 : 1);
    }
}
