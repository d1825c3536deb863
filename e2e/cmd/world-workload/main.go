// Command world-workload is the workload the world's real node runs in real containers: an HTTP
// server whose connections stay open as long as the client holds them (what tcp_connections
// counts), and whose /burn endpoint spends CPU (what a CPU HPA reads from metrics-server).
//
//	GET /          200 "ok"
//	GET /burn?ms=N spends N ms of one core, then answers
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 10000 {
			http.Error(w, "ms: an integer from 0 to 10000", http.StatusBadRequest)
			return
		}
		end := time.Now().Add(time.Duration(ms) * time.Millisecond)
		n := 0
		for time.Now().Before(end) {
			n++
		}
		fmt.Fprintln(w, n)
	})
	// No timeouts: a connection the client holds open stays established.
	log.Fatal((&http.Server{Addr: *listen, Handler: mux}).ListenAndServe())
}
