set terminal pngcairo size 900,560 font 'DejaVu Sans,10'
set output 'throughput_vs_baseline.png'
set title 'Migration throughput / raw loopback TCP (1 connection: 2795 MiB/s, 4 connections: 2500 MiB/s, same run)'
set xlabel 'guest memory (GiB)'
set ylabel 'ratio to 1-connection TCP'
set logscale x 2
set yrange [0:*]
set grid
set key bottom right
plot 'total_vs_memory_kvm.dat' using 1:8 with linespoints lw 2 title 'kvm migration', 'total_vs_memory_synthetic.dat' using 1:8 with linespoints lw 2 title 'synthetic migration', 1 with lines dt 2 lw 2 title '1-connection TCP', 0.895 with lines dt 3 lw 2 title '4-connection TCP'
