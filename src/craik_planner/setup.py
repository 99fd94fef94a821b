from setuptools import find_packages, setup

package_name = 'craik_planner'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='craik maintainers',
    maintainer_email='maintainers@craik-robotics.org',
    description='MPC over a world model rollout energy (CEM / MPPI) and the mpc_planner node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['mpc_planner = craik_planner.mpc_planner_node:main'],
    },
)
