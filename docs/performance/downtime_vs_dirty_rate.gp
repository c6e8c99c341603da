set terminal pngcairo size 900,560 font 'DejaVu Sans,10'
set output 'downtime_vs_dirty_rate.png'
set title 'Downtime vs guest dirty rate (1 GiB guest, 256 MiB working set)'
set xlabel 'dirty rate asked of the guest (MiB/s; max = unlimited)'
set ylabel 'ms'
set logscale y
set grid
set key top left
plot 'downtime_vs_dirty_rate_kvm.dat' using 0:2:xtic(1) with linespoints lw 2 title 'kvm: engine downtime', '' using 0:3 with linespoints dt 2 lw 2 title 'kvm: guest-observed stall', 'downtime_vs_dirty_rate_synthetic.dat' using 0:2:xtic(1) with linespoints lw 2 title 'synthetic: engine downtime', '' using 0:3 with linespoints dt 2 lw 2 title 'synthetic: guest-observed stall'
