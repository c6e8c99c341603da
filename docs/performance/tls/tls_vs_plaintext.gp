set terminal pngcairo size 900,560 font 'DejaVu Sans,10'
set output 'tls_vs_plaintext.png'
set title 'Migration throughput with and without TLS, as a ratio to raw loopback TCP (2383 MiB/s), same run'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel 'ratio to 1-connection TCP'
set yrange [0:*]
set grid y
set key top right
plot 'tls_vs_plaintext.dat' using 4:xtic(1) title 'plaintext gRPC', '' using 5 title 'TLS gRPC'
